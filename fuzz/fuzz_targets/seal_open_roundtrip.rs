#![no_main]
use state_recovery_fuzz::RoundTrip;
libfuzzer_sys::fuzz_target!(
    |input: RoundTrip| state_recovery::fuzzing::seal_open_roundtrip(&input.into())
);
