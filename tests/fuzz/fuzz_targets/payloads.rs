#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quell_tests::fuzz::payloads(data));
