//! cargo-fuzz target `admin_path`: the checks of `weir_fuzz::admin_path` on each input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::admin_path(data));
