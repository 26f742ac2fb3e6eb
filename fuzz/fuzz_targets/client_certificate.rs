//! libFuzzer entry point of `sluice_apiserver::fuzz::client_certificate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_apiserver::fuzz::client_certificate(data));
