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

/// HMAC-SHA256, written out here so that [`seal_bytes`] does not lean on the crate.
fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::Mac as _;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().into()
}

fn pae(pieces: &[&[u8]]) -> Vec<u8> {
    let mut out = (pieces.len() as u64).to_le_bytes().to_vec();
    for p in pieces {
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// The token [`recovery`] would seal at [`NOW`] for `payload` (any bytes, sealed verbatim)
/// under `salt(salt_byte)` with no subject, computed from SECURITY.md section 2 alone: what a
/// build that checked less at seal time could have handed out, to test what `open` refuses.
pub fn seal_bytes(
    salt_byte: u8,
    key: state_recovery::StateKey,
    revision: u64,
    schema: u32,
    payload: &[u8],
) -> String {
    use base64::Engine as _;
    let pepper = pepper_bytes(1);
    let (key_id, namespace, step) = (b"k1", b"test-app", NOW / STEP);
    let mac_root = hmac(&pepper, b"state-recovery/v1/mac-root");
    let totp_secret = hmac(&pepper, b"state-recovery/v1/totp-secret");
    let totp =
        totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 8, 1, STEP, totp_secret.to_vec());
    let code = totp.generate(NOW);
    let step_key = hmac(
        &mac_root,
        &pae(&[
            b"state-recovery/v1/step-key",
            namespace,
            key_id,
            &step.to_be_bytes(),
            code.as_bytes(),
        ]),
    );
    let tag = hmac(
        &step_key,
        &pae(&[
            &[1],
            b"state-recovery/entry",
            namespace,
            key_id,
            &step.to_be_bytes(),
            code.as_bytes(),
            &[salt_byte; 16],
            &[0],
            key.as_bytes(),
            &revision.to_be_bytes(),
            &schema.to_be_bytes(),
            payload,
        ]),
    );
    let mut raw = vec![1u8, key_id.len() as u8];
    raw.extend_from_slice(key_id);
    raw.extend_from_slice(&step.to_be_bytes());
    raw.extend_from_slice(key.as_bytes());
    raw.extend_from_slice(&revision.to_be_bytes());
    raw.extend_from_slice(&schema.to_be_bytes());
    raw.extend_from_slice(payload);
    raw.extend_from_slice(&tag);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}
