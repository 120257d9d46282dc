//! cargo-fuzz target `proxy_protocol`: the checks of `weir_fuzz::proxy_protocol` on each input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::proxy_protocol(data));
