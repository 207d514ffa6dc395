#![no_main]
use state_recovery::fuzzing::RoundTrip;
libfuzzer_sys::fuzz_target!(
    |input: RoundTrip| state_recovery::fuzzing::seal_open_roundtrip(&input)
);
