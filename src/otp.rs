//! Rotating OTP codes (totp-rs) and the per-(key id, step) keys derived from them.
//!
//! Each pepper yields two independent keys, separated by label:
//! `mac_root = HMAC(pepper, "state-recovery/v1/mac-root")` and
//! `totp_secret = HMAC(pepper, "state-recovery/v1/totp-secret")`.
//! For time step `n` the code is RFC 6238 TOTP (HMAC-SHA1, 8 digits) of `totp_secret` at counter
//! `n`, and the step key is
//! `HMAC(mac_root, PAE["state-recovery/v1/step-key", namespace, key_id, BE64(n), code])`.
//! Step keys are cached as pre-keyed MAC states, so opening an entry costs one HMAC pass over
//! the entry and no code computation.

use std::collections::HashMap;
use std::sync::RwLock;

use totp_rs::{Algorithm, TOTP};
use zeroize::Zeroizing;

use crate::error::ConfigError;
use crate::mac::{self, HmacSha256};
use crate::secret::{KeyRing, Pepper};
use crate::token::FORMAT_VERSION;

const MAC_ROOT_LABEL: &[u8] = b"state-recovery/v1/mac-root";
const TOTP_SECRET_LABEL: &[u8] = b"state-recovery/v1/totp-secret";
const STEP_KEY_LABEL: &[u8] = b"state-recovery/v1/step-key";

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

    /// Settings with a step of `step_secs` seconds and `skew` steps either side.
    ///
    /// # Errors
    /// [`ConfigError::InvalidOtpStep`] for a zero step, [`ConfigError::InvalidOtpSkew`] for a
    /// skew above [`MAX_SKEW`](Self::MAX_SKEW).
    pub fn new(step_secs: u64, skew: u64) -> Result<Self, ConfigError> {
        if step_secs == 0 {
            return Err(ConfigError::InvalidOtpStep(step_secs));
        }
        if skew > Self::MAX_SKEW {
            return Err(ConfigError::InvalidOtpSkew(skew));
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
    /// minus one second, saturating.
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

/// Keys derived from one pepper. No `Debug`: it holds secrets.
pub(crate) struct DerivedKeys {
    mac_root: Zeroizing<[u8; 32]>,
    totp: TOTP,
}

impl DerivedKeys {
    pub(crate) fn derive(pepper: &Pepper) -> Self {
        let mac_root = Zeroizing::new(mac::hmac_sha256(pepper.expose_bytes(), MAC_ROOT_LABEL));
        let totp_secret =
            Zeroizing::new(mac::hmac_sha256(pepper.expose_bytes(), TOTP_SECRET_LABEL));
        Self {
            mac_root,
            totp: totp_at_counter(Algorithm::SHA1, totp_secret.to_vec()),
        }
    }

    /// The OTP code for step `n`, as ASCII digits.
    pub(crate) fn code(&self, step: u64) -> Zeroizing<[u8; CODE_DIGITS]> {
        code_bytes(&self.totp, step)
    }

    fn step_mac(
        &self,
        namespace: &[u8],
        key_id: &[u8],
        step: u64,
    ) -> (Zeroizing<[u8; CODE_DIGITS]>, HmacSha256) {
        let code = self.code(step);
        let mut root = mac::keyed(self.mac_root.as_ref());
        mac::pae_update(
            &mut root,
            &[
                &[STEP_KEY_LABEL],
                &[namespace],
                &[key_id],
                &[&step.to_be_bytes()],
                &[code.as_ref()],
            ],
        );
        let step_key = Zeroizing::new(<[u8; 32]>::from(hmac::Mac::finalize(root).into_bytes()));
        (code, mac::keyed(step_key.as_ref()))
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

/// A derived step key: the MAC state keyed with the step key that has already absorbed the
/// part of the entry encoding shared by every entry of its (key id, step), OTP code included.
#[derive(Clone)]
pub(crate) struct StepKey {
    pub(crate) mac: HmacSha256,
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
        let (code, mut mac) = ring_key.derived.step_mac(namespace, id, step);
        mac::feed_entry_prefix(&mut mac, FORMAT_VERSION, namespace, id, step, code.as_ref());
        let key = StepKey { mac };
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
        for (step, skew) in [(1, 0), (1, 48), (14_400, 1), (u64::MAX, 48)] {
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
            OtpSettings::new(14_400, OtpSettings::MAX_SKEW).unwrap(),
            OtpSettings::new(u64::MAX, OtpSettings::MAX_SKEW).unwrap(),
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
        let p = Pepper::try_from_bytes(&[7; 32]).unwrap();
        let a = DerivedKeys::derive(&p);
        let b = DerivedKeys::derive(&p);
        assert_eq!(*a.mac_root, *b.mac_root);
        assert_ne!(a.mac_root.to_vec(), a.totp.secret);
        assert_eq!(*a.code(5), *b.code(5));
        let (_, m1) = a.step_mac(b"ns", b"k", 5);
        let (_, m2) = a.step_mac(b"ns", b"k", 6);
        let (_, m3) = a.step_mac(b"other", b"k", 5);
        let t = |m: HmacSha256| hmac::Mac::finalize(m).into_bytes();
        let base = t(m1.clone());
        assert_eq!(base, t(a.step_mac(b"ns", b"k", 5).1));
        assert_ne!(base, t(m2));
        assert_ne!(base, t(m3));
    }

    #[test]
    fn cache_stays_bounded() {
        let ring = KeyRing::single(
            crate::KeyId::new("k").unwrap(),
            Pepper::try_from_bytes(&[7; 32]).unwrap(),
        )
        .unwrap();
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
