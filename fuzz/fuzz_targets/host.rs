//! cargo-fuzz target `host`: the checks of `weir_fuzz::host` on each input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::host(data));
