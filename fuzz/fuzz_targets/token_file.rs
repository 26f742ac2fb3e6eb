//! libFuzzer entry point of `sluice_apiserver::fuzz::token_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_apiserver::fuzz::token_file(data));
