//! cargo-fuzz target `config`: the checks of `weir_fuzz::config` on each input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::config(data));
