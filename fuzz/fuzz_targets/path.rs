//! cargo-fuzz target `path`: the checks of `weir_fuzz::path` on each input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::path(data));
