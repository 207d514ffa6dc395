#![no_main]
use state_recovery::fuzzing::Model;
libfuzzer_sys::fuzz_target!(|input: Model| state_recovery::fuzzing::model(&input));
