#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| state_recovery::fuzzing::manifest(data));
