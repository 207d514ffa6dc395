//! Shared fixtures: a fixed ring, salt and clock.

use std::sync::Arc;

use state_recovery::{KeyId, KeyRing, ManualClock, Pepper, Recovery, Salt};

/// A fixed time: 2023-11-14T22:13:20Z, in OTP step 118055 with the default 4 h step.
pub const NOW: u64 = 1_700_000_000;
/// Default step length.
pub const STEP: u64 = 14_400;

pub fn pepper(byte: u8) -> Pepper {
    Pepper::try_from_bytes(&[byte; 32]).unwrap()
}

pub fn ring(entries: &[(&str, u8)]) -> KeyRing {
    KeyRing::new(
        entries
            .iter()
            .map(|(id, b)| (KeyId::new(id).unwrap(), pepper(*b))),
    )
    .unwrap()
}

/// A recovery over `ring` with a manual clock set to [`NOW`]; returns the clock too.
pub fn recovery_with(ring: KeyRing) -> (Recovery, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(NOW));
    let r = Recovery::builder(ring)
        .namespace("test-app")
        .clock(clock.clone())
        .build()
        .unwrap();
    (r, clock)
}

pub fn recovery() -> (Recovery, Arc<ManualClock>) {
    recovery_with(ring(&[("k1", 1)]))
}

pub fn salt(byte: u8) -> Salt {
    Salt::from_bytes([byte; 16])
}
