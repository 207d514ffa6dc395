#![no_main]
use state_recovery_fuzz::Model;
libfuzzer_sys::fuzz_target!(|input: Model| state_recovery::fuzzing::model(&input.into()));
