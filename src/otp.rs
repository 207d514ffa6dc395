//! Rotating OTP codes (totp-rs) and the per-(key id, step) keys derived from them.
//!
//! Each pepper yields three independent keys, separated by label:
//! `mac_root = HMAC(pepper, "state-recovery/v1/mac-root")`,
//! `totp_secret = HMAC(pepper, "state-recovery/v1/totp-secret")` and
//! `entry_root = HMAC(pepper, "state-recovery/v2/entry-root")`.
//! For time step `n` the code is RFC 6238 TOTP (HMAC-SHA1, 8 digits) of `totp_secret` at counter
//! `n`, the step key (signed entries) is
//! `HMAC(mac_root, PAE["state-recovery/v1/step-key", namespace, key_id, BE64(n), code])`, and
//! the entry key (encrypted entries) is
//! `HMAC(entry_root, PAE["state-recovery/v2/entry-key", namespace, key_id, BE64(n), code])`.
//! Both are cached per (ring key, step), the step key as a pre-keyed MAC state, so opening an
//! entry costs one HMAC (or one AEAD) pass over the entry and no code computation.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use totp_rs::{Algorithm, TOTP};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::aead::EntryCipher;
use crate::error::ConfigError;
use crate::mac::{self, HmacSha256};
use crate::secret::{KeyRing, Pepper};
use crate::token::{ENCRYPTED_FORMAT_VERSION, FORMAT_VERSION};

const MAC_ROOT_LABEL: &[u8] = b"state-recovery/v1/mac-root";
const TOTP_SECRET_LABEL: &[u8] = b"state-recovery/v1/totp-secret";
const STEP_KEY_LABEL: &[u8] = b"state-recovery/v1/step-key";
const ENTRY_ROOT_LABEL: &[u8] = b"state-recovery/v2/entry-root";
const ENTRY_KEY_LABEL: &[u8] = b"state-recovery/v2/entry-key";

/// Number of digits of the OTP codes.
pub(crate) const CODE_DIGITS: usize = 8;

/// How time is cut into steps and how many neighbouring steps are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtpSettings {
    step_secs: u64,
    skew: u64,
}

impl OtpSettings {
    /// The default step: 4 hours.
    pub const DEFAULT_STEP_SECS: u64 = 14_400;
    /// The default skew: one step either side.
    pub const DEFAULT_SKEW: u64 = 1;
    /// The largest skew accepted.
    pub const MAX_SKEW: u64 = 48;
    /// The longest step accepted: one day.
    pub const MAX_STEP_SECS: u64 = 86_400;
    /// The longest window accepted, `step × (2 × skew + 1)`: seven days. An entry of step `n`
    /// is accepted while the opener's clock is in steps `n − skew` to `n + skew`, that is for
    /// `2 × skew + 1` steps, so [`max_age_secs`](Self::max_age_secs) is at most this minus one
    /// second, whatever the clocks (within `skew` steps of each other) say.
    pub const MAX_WINDOW_SECS: u64 = 604_800;

    /// Settings with a step of `step_secs` seconds and `skew` steps either side.
    ///
    /// # Errors
    /// [`ConfigError::InvalidOtpStep`] for a step of zero or over
    /// [`MAX_STEP_SECS`](Self::MAX_STEP_SECS), [`ConfigError::InvalidOtpSkew`] for a skew
    /// above [`MAX_SKEW`](Self::MAX_SKEW), [`ConfigError::OtpWindowTooLong`] when
    /// `step × (2 × skew + 1)` is over [`MAX_WINDOW_SECS`](Self::MAX_WINDOW_SECS).
    pub fn new(step_secs: u64, skew: u64) -> Result<Self, ConfigError> {
        if step_secs == 0 || step_secs > Self::MAX_STEP_SECS {
            return Err(ConfigError::InvalidOtpStep(step_secs));
        }
        if skew > Self::MAX_SKEW {
            return Err(ConfigError::InvalidOtpSkew(skew));
        }
        // At most 86 400 × 97: no overflow, but saturate anyway.
        let window_secs = step_secs.saturating_mul(skew.saturating_mul(2).saturating_add(1));
        if window_secs > Self::MAX_WINDOW_SECS {
            return Err(ConfigError::OtpWindowTooLong {
                step_secs,
                skew,
                window_secs,
            });
        }
        Ok(Self { step_secs, skew })
    }

    /// The step length in seconds.
    #[must_use]
    pub const fn step_secs(&self) -> u64 {
        self.step_secs
    }

    /// The number of steps accepted either side of the current one.
    #[must_use]
    pub const fn skew(&self) -> u64 {
        self.skew
    }

    /// The step that contains `now`.
    #[must_use]
    pub const fn step_at(&self, now: u64) -> u64 {
        // step_secs is never zero (checked in `new`).
        match now.checked_div(self.step_secs) {
            Some(s) => s,
            None => 0,
        }
    }

    /// Whether the step arithmetic covers `now` exactly: the window and the step-key cache
    /// reach `skew + 1` steps past the current one, and that must not saturate at
    /// `u64::MAX`. With the default 4-hour step every time is covered; only steps of a few
    /// seconds leave the last seconds of `u64` out. A clock outside this range makes `seal`
    /// fail with [`SealError::ClockOutOfRange`](crate::SealError::ClockOutOfRange), and every
    /// entry opened at such a time is `expired`.
    #[must_use]
    pub const fn covers(&self, now: u64) -> bool {
        self.step_at(now)
            .checked_add(self.skew.saturating_add(1))
            .is_some()
    }

    /// The clock reading `now` ([`Clock::checked_now`](crate::Clock::checked_now)) when the
    /// arithmetic covers it, or where it lies instead: `NotYetValid` before 1970 (every
    /// entry is from its future), `Expired` past the covered range (every entry is older than
    /// its window).
    /// With it, its step (so the caller divides once).
    pub(crate) fn covered(&self, now: Option<u64>) -> Result<(u64, u64), Window> {
        let Some(now) = now else {
            return Err(Window::NotYetValid);
        };
        let current = self.step_at(now);
        if current.checked_add(self.skew.saturating_add(1)).is_none() {
            return Err(Window::Expired);
        }
        Ok((now, current))
    }

    /// Where `step` lies against the window around `now`.
    #[cfg(test)]
    pub(crate) fn check(&self, step: u64, now: u64) -> Window {
        self.check_step(step, self.step_at(now))
    }

    /// Where `step` lies against the window around the `current` step.
    pub(crate) fn check_step(&self, step: u64, current: u64) -> Window {
        if step.saturating_add(self.skew) < current {
            Window::Expired
        } else if step > current.saturating_add(self.skew) {
            Window::NotYetValid
        } else {
            Window::Inside
        }
    }

    /// The longest time an entry can be accepted after it was sealed: (2 × skew + 1) steps
    /// minus one second; at most [`MAX_WINDOW_SECS`](Self::MAX_WINDOW_SECS) − 1.
    #[must_use]
    pub const fn max_age_secs(&self) -> u64 {
        self.step_secs
            .saturating_mul(self.skew.saturating_mul(2).saturating_add(1))
            .saturating_sub(1)
    }
}

impl Default for OtpSettings {
    fn default() -> Self {
        Self {
            step_secs: Self::DEFAULT_STEP_SECS,
            skew: Self::DEFAULT_SKEW,
        }
    }
}

/// The outcome of a window check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Window {
    Inside,
    Expired,
    NotYetValid,
}

/// 32 secret bytes on the heap, wiped when dropped: moving the owner moves a pointer, never
/// the bytes, so no stale copy is left in a stack frame.
pub(crate) struct SecretBytes(Box<[u8; 32]>);

impl SecretBytes {
    fn zeroed() -> Self {
        Self(Box::new([0; 32]))
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl Zeroize for SecretBytes {
    fn zeroize(&mut self) {
        self.0.as_mut().zeroize();
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for SecretBytes {}

/// Keys derived from one pepper. No `Debug`: it holds secrets. All are wiped on drop:
/// `mac_root` and `entry_root` by [`SecretBytes`], the TOTP secret by totp-rs (its `zeroize`
/// feature).
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct DerivedKeys {
    mac_root: SecretBytes,
    entry_root: SecretBytes,
    totp: TOTP,
}

impl DerivedKeys {
    pub(crate) fn derive(pepper: &Pepper) -> Self {
        // Each HMAC writes straight into wiped storage: no intermediate copy of the result.
        let mut mac_root = SecretBytes::zeroed();
        mac::hmac_sha256_into(pepper.expose_bytes(), MAC_ROOT_LABEL, &mut mac_root.0);
        let mut entry_root = SecretBytes::zeroed();
        mac::hmac_sha256_into(pepper.expose_bytes(), ENTRY_ROOT_LABEL, &mut entry_root.0);
        let mut totp_secret = Zeroizing::new([0u8; 32]);
        mac::hmac_sha256_into(pepper.expose_bytes(), TOTP_SECRET_LABEL, &mut totp_secret);
        Self {
            mac_root,
            entry_root,
            // totp-rs owns (and wipes on drop) this copy; ours is wiped when it goes out of scope.
            totp: totp_at_counter(Algorithm::SHA1, totp_secret.to_vec()),
        }
    }

    /// Whether both come from the same HMAC key (equal peppers, or peppers HMAC treats as
    /// equal: zero-padded to its 64-byte block, or hashed when longer), compared in constant
    /// time through their `mac_root`s.
    pub(crate) fn same_mac_key(&self, other: &Self) -> subtle::Choice {
        use subtle::ConstantTimeEq as _;
        self.mac_root.as_slice().ct_eq(other.mac_root.as_slice())
    }

    /// The OTP code for step `n`, as ASCII digits.
    pub(crate) fn code(&self, step: u64) -> Zeroizing<[u8; CODE_DIGITS]> {
        code_bytes(&self.totp, step)
    }

    /// `HMAC(root, PAE[label, namespace, key_id, BE64(step), code])`, written into wiped
    /// storage.
    fn derive_step(
        root: &SecretBytes,
        label: &[u8],
        namespace: &[u8],
        key_id: &[u8],
        step: u64,
        code: &[u8],
    ) -> Zeroizing<[u8; 32]> {
        let mut mac = mac::keyed(root.as_slice());
        mac::pae_update(
            &mut mac,
            &[
                &[label],
                &[namespace],
                &[key_id],
                &[&step.to_be_bytes()],
                &[code],
            ],
        );
        let mut key = Zeroizing::new([0u8; 32]);
        mac::finalize_into(mac, &mut key);
        key
    }

    /// The step key's MAC state (signed entries) and the entry cipher (encrypted entries) of
    /// (`namespace`, `key_id`, `step`), from one OTP code.
    fn step_keys(&self, namespace: &[u8], key_id: &[u8], step: u64) -> StepKey {
        let code = self.code(step);
        let code = code.as_ref();
        let step_key = Self::derive_step(
            &self.mac_root,
            STEP_KEY_LABEL,
            namespace,
            key_id,
            step,
            code,
        );
        let mut mac = mac::keyed(step_key.as_ref());
        mac::feed_entry_prefix(&mut mac, FORMAT_VERSION, namespace, key_id, step, code);
        let entry_key = Self::derive_step(
            &self.entry_root,
            ENTRY_KEY_LABEL,
            namespace,
            key_id,
            step,
            code,
        );
        let entry = EntryCipher::new(
            &entry_key,
            ENCRYPTED_FORMAT_VERSION,
            namespace,
            key_id,
            step,
            code,
        );
        StepKey {
            mac,
            entry: Arc::new(entry),
        }
    }

    #[cfg(test)]
    fn step_mac(&self, namespace: &[u8], key_id: &[u8], step: u64) -> HmacSha256 {
        let code = self.code(step);
        let step_key = Self::derive_step(
            &self.mac_root,
            STEP_KEY_LABEL,
            namespace,
            key_id,
            step,
            code.as_ref(),
        );
        mac::keyed(step_key.as_ref())
    }

    #[cfg(test)]
    fn entry_key(&self, namespace: &[u8], key_id: &[u8], step: u64) -> Zeroizing<[u8; 32]> {
        let code = self.code(step);
        Self::derive_step(
            &self.entry_root,
            ENTRY_KEY_LABEL,
            namespace,
            key_id,
            step,
            code.as_ref(),
        )
    }
}

/// A TOTP generator whose step is one "counter": we compute the step number ourselves (so
/// times near zero or far in the future never overflow) and hand totp-rs the counter.
fn totp_at_counter(algorithm: Algorithm, secret: Vec<u8>) -> TOTP {
    TOTP::new_unchecked(algorithm, CODE_DIGITS, 0, 1, secret)
}

fn code_bytes(totp: &TOTP, counter: u64) -> Zeroizing<[u8; CODE_DIGITS]> {
    let text = Zeroizing::new(totp.generate(counter));
    let mut out = Zeroizing::new([b'0'; CODE_DIGITS]);
    for (o, b) in out.iter_mut().zip(text.bytes()) {
        *o = b;
    }
    out
}

/// RFC 6238 TOTP for arbitrary algorithm, step and time: used by the known-answer tests.
#[doc(hidden)]
#[must_use]
pub fn rfc6238_code(algorithm: Algorithm, secret: &[u8], step_secs: u64, time: u64) -> String {
    let counter = time.checked_div(step_secs).unwrap_or(0);
    let totp = totp_at_counter(algorithm, secret.to_vec());
    String::from_utf8_lossy(code_bytes(&totp, counter).as_ref()).into_owned()
}

/// The derived keys of one (ring key, step).
///
/// `mac`: the MAC state keyed with the step key that has already absorbed the part of a
/// signed entry's encoding shared by every entry of its (key id, step), OTP code included.
/// Not wiped: `hmac` 0.12 (and `sha2`/`digest` 0.10) implement no `Zeroize`, and overwriting
/// its fields needs `unsafe`. A state is as good as its step key for that one (namespace,
/// key id, step), so it can forge entries only for a step inside the window; the cache drops
/// states whose step has left it, and those can no longer forge anything that opens.
///
/// `entry`: the encryption key of encrypted entries and their associated-data prefix, shared
/// (one copy of the key, however many clones) and wiped when the last clone goes.
#[derive(Clone)]
pub(crate) struct StepKey {
    pub(crate) mac: HmacSha256,
    pub(crate) entry: Arc<EntryCipher>,
}

/// Cache of step keys by (ring index, step). Only steps inside the window are ever derived
/// (the window is checked first), so it holds at most ring size × (2 × skew + 1) entries plus
/// those of the window that just slid past; older steps are pruned on insert.
#[derive(Default)]
pub(crate) struct StepKeyCache {
    map: RwLock<HashMap<(usize, u64), StepKey>>,
}

impl StepKeyCache {
    pub(crate) fn get(
        &self,
        ring: &KeyRing,
        index: usize,
        step: u64,
        namespace: &[u8],
        settings: &OtpSettings,
        now: u64,
    ) -> Option<StepKey> {
        if let Ok(map) = self.map.read() {
            if let Some(k) = map.get(&(index, step)) {
                return Some(k.clone());
            }
        }
        let ring_key = ring.get(index)?;
        let id = ring_key.id.as_str().as_bytes();
        let key = ring_key.derived.step_keys(namespace, id, step);
        if let Ok(mut map) = self.map.write() {
            let current = settings.step_at(now);
            let lo = current.saturating_sub(settings.skew().saturating_add(1));
            let hi = current.saturating_add(settings.skew().saturating_add(1));
            map.retain(|(_, s), _| (lo..=hi).contains(s));
            let cap = ring.len().saturating_mul(
                usize::try_from(settings.skew())
                    .unwrap_or(usize::MAX)
                    .saturating_mul(2)
                    .saturating_add(3),
            );
            if map.len() >= cap {
                map.clear();
            }
            map.insert((index, step), key.clone());
        }
        Some(key)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.read().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 Appendix B: seeds are the ASCII strings below, 8 digits, 30 s steps.
    const SEED_SHA1: &[u8] = b"12345678901234567890";
    const SEED_SHA256: &[u8] = b"12345678901234567890123456789012";
    const SEED_SHA512: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    /// A fixed pepper with 32 distinct byte values.
    fn fixture_pepper() -> Pepper {
        Pepper::try_from_bytes(&std::array::from_fn::<u8, 32, _>(|i| {
            7 ^ (i as u8).wrapping_mul(37)
        }))
        .unwrap()
    }

    #[test]
    fn rfc6238_appendix_b() {
        let table: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1_111_111_109, "07081804", "68084774", "25091201"),
            (1_111_111_111, "14050471", "67062674", "99943326"),
            (1_234_567_890, "89005924", "91819424", "93441116"),
            (2_000_000_000, "69279037", "90698825", "38618901"),
            (20_000_000_000, "65353130", "77737706", "47863826"),
        ];
        for (t, sha1, sha256, sha512) in table {
            assert_eq!(
                rfc6238_code(Algorithm::SHA1, SEED_SHA1, 30, t),
                sha1,
                "t={t}"
            );
            assert_eq!(
                rfc6238_code(Algorithm::SHA256, SEED_SHA256, 30, t),
                sha256,
                "t={t}"
            );
            assert_eq!(
                rfc6238_code(Algorithm::SHA512, SEED_SHA512, 30, t),
                sha512,
                "t={t}"
            );
        }
    }

    #[test]
    fn extreme_times_do_not_panic() {
        for t in [0, 1, 29, 30, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
            assert_eq!(rfc6238_code(Algorithm::SHA1, SEED_SHA1, 30, t).len(), 8);
            assert_eq!(rfc6238_code(Algorithm::SHA1, SEED_SHA1, 1, t).len(), 8);
        }
        for (step, skew) in [(1, 0), (1, 48), (14_400, 1), (86_400, 3), (6_235, 48)] {
            let s = OtpSettings::new(step, skew).unwrap();
            for now in [0, 1, u64::MAX] {
                for st in [0, 1, u64::MAX] {
                    let _ = s.check(st, now);
                }
            }
            let _ = s.max_age_secs();
        }
    }

    #[test]
    fn window_arithmetic() {
        let s = OtpSettings::new(100, 1).unwrap();
        let now = 1000; // step 10
        assert_eq!(s.check(8, now), Window::Expired);
        assert_eq!(s.check(9, now), Window::Inside);
        assert_eq!(s.check(10, now), Window::Inside);
        assert_eq!(s.check(11, now), Window::Inside);
        assert_eq!(s.check(12, now), Window::NotYetValid);
        // Near zero: step 0 with skew 1 at time 0 is inside, no underflow.
        assert_eq!(s.check(0, 0), Window::Inside);
        assert_eq!(s.check(1, 0), Window::Inside);
        assert_eq!(s.check(2, 0), Window::NotYetValid);
        assert_eq!(s.check(u64::MAX / 100, u64::MAX), Window::Inside);
        assert_eq!(s.check(u64::MAX, u64::MAX), Window::NotYetValid);
        assert_eq!(s.max_age_secs(), 299);
        assert!(OtpSettings::new(0, 1).is_err());
        assert!(OtpSettings::new(1, 49).is_err());
    }

    #[test]
    fn step_and_window_are_capped() {
        const DAY: u64 = 86_400;
        const WEEK: u64 = 7 * DAY;
        // The step: at most one day.
        assert!(OtpSettings::new(DAY, 0).is_ok());
        assert!(OtpSettings::new(DAY, 3).is_ok()); // 7 steps of a day: exactly a week
        for step in [DAY + 1, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
            for skew in [0, 1, 48] {
                let err = OtpSettings::new(step, skew).unwrap_err();
                assert_eq!(err, ConfigError::InvalidOtpStep(step), "{step} {skew}");
                assert!(err.to_string().contains("86400"), "{err}");
            }
        }
        // The window, step × (2 × skew + 1): at most a week.
        assert_eq!(
            OtpSettings::new(DAY, 4).unwrap_err(),
            ConfigError::OtpWindowTooLong {
                step_secs: DAY,
                skew: 4,
                window_secs: 9 * DAY
            }
        );
        assert!(OtpSettings::new(DAY, 4)
            .unwrap_err()
            .to_string()
            .contains("604800"));
        // With the largest skew, 97 steps: 6235 s fits (604 795 s), 6236 s does not.
        let fits = OtpSettings::new(6_235, OtpSettings::MAX_SKEW).unwrap();
        assert_eq!(fits.max_age_secs(), 6_235 * 97 - 1);
        assert!(matches!(
            OtpSettings::new(6_236, OtpSettings::MAX_SKEW),
            Err(ConfigError::OtpWindowTooLong {
                window_secs: 604_892,
                ..
            })
        ));
        // Exactly a week is allowed: 604 800 = 2 × 3 + 1 steps of a day, = 7 × 86 400.
        let week = OtpSettings::new(WEEK / 7, 3).unwrap();
        assert_eq!(week.max_age_secs(), WEEK - 1);
        assert!(OtpSettings::new(201_600, 1).is_err()); // 3 steps, but over a day each
        assert!(OtpSettings::new(1, OtpSettings::MAX_SKEW).is_ok());
        // Every accepted setting keeps the hard maximum age under a week.
        for step in [1, 59, 3_600, 14_400, 43_200, DAY] {
            for skew in 0..=OtpSettings::MAX_SKEW {
                if let Ok(s) = OtpSettings::new(step, skew) {
                    assert!(s.max_age_secs() < WEEK, "{step} {skew}");
                }
            }
        }
        assert_eq!(OtpSettings::MAX_STEP_SECS, DAY);
        assert_eq!(OtpSettings::MAX_WINDOW_SECS, WEEK);
    }

    #[test]
    fn the_covered_range() {
        // Step 1 s, skew 1: the window reaches two steps past the current one.
        let s = OtpSettings::new(1, 1).unwrap();
        assert!(s.covers(0));
        assert!(s.covers(u64::MAX - 2));
        assert!(!s.covers(u64::MAX - 1));
        assert!(!s.covers(u64::MAX));
        let s = OtpSettings::new(1, OtpSettings::MAX_SKEW).unwrap();
        assert!(s.covers(u64::MAX - 49));
        assert!(!s.covers(u64::MAX - 48));
        let s = OtpSettings::new(2, 1).unwrap();
        assert!(s.covers(u64::MAX)); // step u64::MAX / 2, far from the top
        for s in [
            OtpSettings::default(),
            OtpSettings::new(6_000, OtpSettings::MAX_SKEW).unwrap(),
            OtpSettings::new(OtpSettings::MAX_STEP_SECS, 3).unwrap(),
        ] {
            assert!(s.covers(0) && s.covers(u64::MAX));
        }
        let s = OtpSettings::new(1, 1).unwrap();
        assert_eq!(s.covered(Some(5)), Ok((5, 5)));
        assert_eq!(s.covered(None), Err(Window::NotYetValid));
        assert_eq!(s.covered(Some(u64::MAX)), Err(Window::Expired));
    }

    #[test]
    fn derivations_are_separated_and_deterministic() {
        let p = fixture_pepper();
        let a = DerivedKeys::derive(&p);
        let b = DerivedKeys::derive(&p);
        assert_eq!(a.mac_root.as_slice(), b.mac_root.as_slice());
        assert_eq!(
            a.mac_root.as_slice(),
            mac::hmac_sha256(p.expose_bytes(), MAC_ROOT_LABEL)
        );
        assert_eq!(
            a.totp.secret,
            mac::hmac_sha256(p.expose_bytes(), TOTP_SECRET_LABEL)
        );
        assert_eq!(
            a.entry_root.as_slice(),
            mac::hmac_sha256(p.expose_bytes(), ENTRY_ROOT_LABEL)
        );
        assert_ne!(a.mac_root.as_slice(), a.totp.secret);
        assert_ne!(a.entry_root.as_slice(), a.mac_root.as_slice());
        assert_ne!(a.entry_root.as_slice(), a.totp.secret);
        assert_eq!(*a.code(5), *b.code(5));
        let m1 = a.step_mac(b"ns", b"k", 5);
        let m2 = a.step_mac(b"ns", b"k", 6);
        let m3 = a.step_mac(b"other", b"k", 5);
        let t = |m: HmacSha256| hmac::Mac::finalize(m).into_bytes();
        let base = t(m1.clone());
        assert_eq!(base, t(a.step_mac(b"ns", b"k", 5)));
        assert_ne!(base, t(m2));
        assert_ne!(base, t(m3));
        // The entry key: its own root and label, the same step inputs.
        let code = a.code(5);
        let step_key = mac::hmac_sha256(
            a.mac_root.as_slice(),
            &mac::pae(&[
                STEP_KEY_LABEL,
                b"ns",
                b"k",
                &5u64.to_be_bytes(),
                code.as_ref(),
            ]),
        );
        let entry_key = mac::hmac_sha256(
            a.entry_root.as_slice(),
            &mac::pae(&[
                ENTRY_KEY_LABEL,
                b"ns",
                b"k",
                &5u64.to_be_bytes(),
                code.as_ref(),
            ]),
        );
        assert_eq!(*a.entry_key(b"ns", b"k", 5), entry_key);
        assert_ne!(entry_key, step_key);
        assert_ne!(*a.entry_key(b"ns", b"k", 6), entry_key);
        assert_ne!(*a.entry_key(b"other", b"k", 5), entry_key);
        assert_ne!(*a.entry_key(b"ns", b"k2", 5), entry_key);
    }

    #[test]
    fn derived_keys_are_wiped() {
        fn wiped_on_drop<T: ZeroizeOnDrop>() {}
        wiped_on_drop::<DerivedKeys>();
        wiped_on_drop::<SecretBytes>();
        wiped_on_drop::<Pepper>();
        // Drop runs `zeroize` (derived ZeroizeOnDrop), and `zeroize` reaches every secret.
        let mut d = DerivedKeys::derive(&fixture_pepper());
        assert!(d.mac_root.as_slice().iter().any(|b| *b != 0));
        assert!(d.entry_root.as_slice().iter().any(|b| *b != 0));
        assert_eq!(d.totp.secret.len(), 32);
        d.zeroize();
        assert_eq!(d.mac_root.as_slice(), [0; 32]);
        assert_eq!(d.entry_root.as_slice(), [0; 32]);
        assert!(d.totp.secret.is_empty());
        let mut s = SecretBytes(Box::new([0xAB; 32]));
        s.zeroize();
        assert_eq!(s.as_slice(), [0; 32]);
    }

    #[test]
    fn cache_stays_bounded() {
        let ring = KeyRing::single(crate::KeyId::new("k").unwrap(), fixture_pepper()).unwrap();
        let s = OtpSettings::new(10, 1).unwrap();
        let cache = StepKeyCache::default();
        for now in (0..10_000).step_by(10) {
            let step = s.step_at(now);
            assert!(cache.get(&ring, 0, step, b"ns", &s, now).is_some());
            assert!(cache.len() <= 5, "{}", cache.len());
        }
        assert!(cache.get(&ring, 3, 0, b"ns", &s, 0).is_none());
    }
}
