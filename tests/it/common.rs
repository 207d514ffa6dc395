//! Shared fixtures: a fixed ring, salt and clock.

use std::sync::Arc;

use state_recovery::{KeyId, KeyRing, ManualClock, Pepper, Recovery, Salt};

/// A fixed time: 2023-11-14T22:13:20Z, in OTP step 118055 with the default 4 h step.
pub const NOW: u64 = 1_700_000_000;
/// Default step length.
pub const STEP: u64 = 14_400;

/// The fixture pepper for `byte`: 32 distinct byte values (weak keys such as `[byte; 32]` are
/// refused), a different key for every `byte`.
pub fn pepper(byte: u8) -> Pepper {
    Pepper::try_from_bytes(&pepper_bytes(byte)).unwrap()
}

/// The bytes of [`pepper`]: `byte` XOR 37 × i for i in 0..32 (37 is odd, so all differ).
pub fn pepper_bytes(byte: u8) -> [u8; 32] {
    std::array::from_fn(|i| byte ^ (i as u8).wrapping_mul(37))
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
