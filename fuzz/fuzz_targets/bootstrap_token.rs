//! libFuzzer entry point of `sluice_apiserver::fuzz::bootstrap_token`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_apiserver::fuzz::bootstrap_token(data));
