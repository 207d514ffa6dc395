//! Secrets: peppers (server keys), the key ring that holds them with ids, and per-user salts.
//!
//! Every type here has a redacted `Debug`, no `Display`, constant-time equality, and zeroizes
//! its bytes when dropped.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::rand_core::TryRngCore as _;
use rand::RngCore as _;
use subtle::ConstantTimeEq as _;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::ConfigError;
use crate::otp::DerivedKeys;

/// A server secret: at least 32 bytes from a CSPRNG, shared by every worker of a deployment.
///
/// Whoever holds a pepper can forge any entry sealed under it: it is the root of all security
/// here. Its `Debug` prints `Pepper(<redacted>)`; it has no `Display`; it is zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pepper(Box<[u8]>);

impl Pepper {
    /// The shortest pepper accepted, in bytes.
    pub const MIN_LEN: usize = 32;
    /// The longest pepper accepted, in bytes.
    pub const MAX_LEN: usize = 1024;
    /// The fewest distinct byte values a pepper must contain.
    ///
    /// 32 bytes from a CSPRNG hold about 30.1 distinct values on average; fewer than 16
    /// happens with probability 3.2 × 10⁻¹⁷ (about 2⁻⁵⁵), and less for longer keys, while a
    /// constant key, a counter of a few values or a mostly-zero buffer always has fewer.
    /// [`generate`](Self::generate) never returns a key below it.
    pub const MIN_DISTINCT_BYTES: usize = 16;

    /// How many draws [`generate`](Self::generate) makes before it calls the random source
    /// broken. One draw fails the checks with probability about 2⁻⁵⁵.
    const GENERATE_ATTEMPTS: usize = 8;

    /// A pepper from raw bytes.
    ///
    /// Refuses keys that cannot be random: all zero, or fewer than
    /// [`MIN_DISTINCT_BYTES`](Self::MIN_DISTINCT_BYTES) distinct byte values (for example 32
    /// copies of one byte, or 31 zeros and a one). The count runs in time that depends only on
    /// the length. It cannot tell a low-entropy key that looks random (a hash of a password)
    /// from a real one: use `keygen`.
    ///
    /// # Errors
    /// [`ConfigError::PepperTooShort`], [`ConfigError::PepperTooLong`],
    /// [`ConfigError::PepperAllZero`] or [`ConfigError::PepperLowDiversity`]; none contains
    /// key material.
    pub fn try_from_bytes(bytes: &[u8]) -> Result<Self, ConfigError> {
        if bytes.len() < Self::MIN_LEN {
            return Err(ConfigError::PepperTooShort { len: bytes.len() });
        }
        if bytes.len() > Self::MAX_LEN {
            return Err(ConfigError::PepperTooLong { len: bytes.len() });
        }
        if bool::from(all_zero(bytes)) {
            return Err(ConfigError::PepperAllZero);
        }
        if !bool::from(diverse(bytes)) {
            return Err(ConfigError::PepperLowDiversity);
        }
        Ok(Self(bytes.into()))
    }

    /// A pepper from canonical unpadded base64url, as written in `STATE_RECOVERY_KEYS`.
    ///
    /// # Errors
    /// [`ConfigError::KeyEncoding`] (naming no key) or the errors of
    /// [`try_from_bytes`](Self::try_from_bytes).
    pub fn from_base64(encoded: &str) -> Result<Self, ConfigError> {
        // Decoded into a buffer that is wiped on every path: `Engine::decode` drops its own
        // buffer, with whatever it decoded so far, unwiped when the text turns out invalid.
        let mut buffer = Zeroizing::new(vec![0u8; base64::decoded_len_estimate(encoded.len())]);
        let len = URL_SAFE_NO_PAD
            .decode_slice(encoded.as_bytes(), &mut buffer)
            .map_err(|_| ConfigError::KeyEncoding)?;
        Self::try_from_bytes(buffer.get(..len).ok_or(ConfigError::KeyEncoding)?)
    }

    /// 32 fresh bytes from the operating system's CSPRNG that pass every check of
    /// [`try_from_bytes`](Self::try_from_bytes) (a draw that does not, about one in 2⁵⁵, is
    /// drawn again).
    ///
    /// # Panics
    /// If the operating system's random source fails, or returns 8 draws in a row that fail
    /// the checks; see [`try_generate`](Self::try_generate).
    #[must_use]
    #[allow(clippy::panic)] // documented above: there is no pepper to return
    pub fn generate() -> Self {
        let mut rng = rand::rngs::OsRng.unwrap_err();
        match Self::generate_with(|bytes| {
            rng.fill_bytes(bytes);
            Ok(())
        }) {
            Ok(p) => p,
            Err(e) => panic!("Pepper::generate: {e}"),
        }
    }

    /// 32 fresh bytes from the operating system's CSPRNG that pass every check of
    /// [`try_from_bytes`](Self::try_from_bytes).
    ///
    /// # Errors
    /// [`ConfigError::Randomness`] if the operating system's random source fails, or returns
    /// 8 draws in a row that fail the checks.
    pub fn try_generate() -> Result<Self, ConfigError> {
        Self::generate_with(|bytes| {
            rand::rngs::OsRng
                .try_fill_bytes(bytes)
                .map_err(|_| ConfigError::Randomness)
        })
    }

    fn generate_with(
        mut fill: impl FnMut(&mut [u8]) -> Result<(), ConfigError>,
    ) -> Result<Self, ConfigError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        for _ in 0..Self::GENERATE_ATTEMPTS {
            fill(bytes.as_mut())?;
            if let Ok(p) = Self::try_from_bytes(bytes.as_ref()) {
                return Ok(p);
            }
        }
        Err(ConfigError::Randomness)
    }

    /// The pepper as unpadded base64url: the secret itself. Only for writing key files and
    /// `keygen` output; never log it.
    #[must_use]
    pub fn expose_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(URL_SAFE_NO_PAD.encode(&self.0))
    }

    pub(crate) fn expose_bytes(&self) -> &[u8] {
        &self.0
    }
}

fn all_zero(bytes: &[u8]) -> subtle::Choice {
    bytes
        .iter()
        .fold(subtle::Choice::from(1), |acc, b| acc & b.ct_eq(&0))
}

/// Whether `bytes` hold at least [`Pepper::MIN_DISTINCT_BYTES`] distinct values. Every byte is
/// compared with every value, without branches or secret-indexed memory, so the time depends
/// only on the length (at most 256 × 1024 comparisons, once per key at start-up).
fn diverse(bytes: &[u8]) -> subtle::Choice {
    use subtle::ConstantTimeLess as _;
    let mut distinct: u32 = 0;
    for value in 0..=u8::MAX {
        let present = bytes
            .iter()
            .fold(subtle::Choice::from(0), |acc, b| acc | b.ct_eq(&value));
        // At most 256: never wraps.
        distinct = distinct.wrapping_add(u32::from(present.unwrap_u8()));
    }
    let min = u32::try_from(Pepper::MIN_DISTINCT_BYTES).unwrap_or(u32::MAX);
    !distinct.ct_lt(&min)
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(<redacted>)")
    }
}

impl PartialEq for Pepper {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Pepper {}

/// The id of a pepper in a [`KeyRing`]: 1 to 32 characters from `[A-Za-z0-9_-]`.
///
/// Ids are not secret: they travel in every token so the opener knows which pepper to use.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(Box<str>);

impl KeyId {
    /// The longest id accepted.
    pub const MAX_LEN: usize = 32;

    /// Checks and wraps an id.
    ///
    /// # Errors
    /// [`ConfigError::InvalidKeyId`].
    pub fn new(id: &str) -> Result<Self, ConfigError> {
        if Self::is_valid(id.as_bytes()) {
            Ok(Self(id.into()))
        } else {
            Err(ConfigError::InvalidKeyId { len: id.len() })
        }
    }

    pub(crate) fn is_valid(id: &[u8]) -> bool {
        (1..=Self::MAX_LEN).contains(&id.len())
            && id
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
    }

    /// The id as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({:?})", &*self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One pepper in a ring with its id and the keys derived from it.
pub(crate) struct RingKey {
    pub(crate) id: KeyId,
    pub(crate) pepper: Pepper,
    pub(crate) derived: DerivedKeys,
}

/// Peppers with ids. The first seals; every one opens (the rotation grace period).
///
/// Rotation: put a new pepper first, keep the old one after it for at least the OTP window
/// (step × (2 × skew + 1)), then remove it. See SECURITY.md for the runbook.
/// `Debug` lists the ids only.
pub struct KeyRing {
    keys: Vec<RingKey>,
}

impl KeyRing {
    /// The most keys a ring may hold.
    pub const MAX_KEYS: usize = 16;

    /// A ring from `(id, pepper)` pairs; the first seals.
    ///
    /// # Errors
    /// [`ConfigError::EmptyKeyRing`], [`ConfigError::DuplicateKeyId`],
    /// [`ConfigError::DuplicatePepper`] (one key under two ids, compared as HMAC keys, so a
    /// key with zero bytes appended is the same key), or [`ConfigError::InvalidLimit`] for
    /// more than [`MAX_KEYS`](Self::MAX_KEYS) keys. Entries are named by their 1-based
    /// position, never by id or key.
    pub fn new(keys: impl IntoIterator<Item = (KeyId, Pepper)>) -> Result<Self, ConfigError> {
        let mut ring: Vec<RingKey> = Vec::new();
        for (id, pepper) in keys {
            if let Some(first) = ring.iter().position(|k| k.id == id) {
                return Err(ConfigError::DuplicateKeyId {
                    first: first.saturating_add(1),
                    second: ring.len().saturating_add(1),
                });
            }
            if ring.len() >= Self::MAX_KEYS {
                return Err(ConfigError::InvalidLimit {
                    name: "key ring",
                    detail: "at most 16 keys",
                });
            }
            let derived = DerivedKeys::derive(&pepper);
            if let Some(first) = position_of(&ring, |k| k.derived.same_mac_key(&derived)) {
                return Err(ConfigError::DuplicatePepper {
                    first,
                    second: ring.len().saturating_add(1),
                });
            }
            ring.push(RingKey {
                id,
                pepper,
                derived,
            });
        }
        if ring.is_empty() {
            return Err(ConfigError::EmptyKeyRing);
        }
        Ok(Self { keys: ring })
    }

    /// A ring with one pepper.
    ///
    /// # Errors
    /// None in practice; kept fallible for symmetry with [`new`](Self::new).
    pub fn single(id: KeyId, pepper: Pepper) -> Result<Self, ConfigError> {
        Self::new([(id, pepper)])
    }

    /// Parses the `STATE_RECOVERY_KEYS` format: `ID:KEY[,ID:KEY...]`, KEY being unpadded
    /// base64url of at least 32 bytes. Whitespace around entries is ignored.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the entry's 1-based position, never its text (neither the key
    /// nor the id: a key written where the id belongs can look like an id):
    /// [`ConfigError::KeyRingSyntax`], [`ConfigError::KeyRingEntry`] for an invalid id or key,
    /// or the errors of [`new`](Self::new).
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        let mut pairs = Vec::new();
        for (i, item) in spec.trim().split(',').enumerate() {
            let position = i.saturating_add(1);
            let in_entry = |problem| ConfigError::KeyRingEntry {
                position,
                problem: Box::new(problem),
            };
            let (id, key) = item
                .trim()
                .split_once(':')
                .ok_or(ConfigError::KeyRingSyntax { position })?;
            let id = KeyId::new(id.trim()).map_err(in_entry)?;
            let pepper = Pepper::from_base64(key.trim()).map_err(in_entry)?;
            pairs.push((id, pepper));
        }
        Self::new(pairs)
    }

    /// The ring in the `STATE_RECOVERY_KEYS` format: contains every secret. Only for writing
    /// key files; never log it.
    #[must_use]
    pub fn expose_spec(&self) -> Zeroizing<String> {
        // Sized up front so that growing never leaves copies of the secrets behind.
        let cap = self.keys.iter().fold(0usize, |n, k| {
            n.saturating_add(k.id.as_str().len())
                .saturating_add(k.pepper.expose_bytes().len().saturating_mul(2))
                .saturating_add(2)
        });
        let mut out = Zeroizing::new(String::with_capacity(cap));
        for (i, k) in self.keys.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k.id.as_str());
            out.push(':');
            out.push_str(&k.pepper.expose_base64());
        }
        out
    }

    /// The ids in ring order; the first is the one that seals.
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.iter().map(|k| &k.id)
    }

    /// The number of peppers in the ring.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a ring holds at least one key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    #[allow(clippy::indexing_slicing)] // `new` refuses an empty ring, so index 0 exists
    pub(crate) fn sealing(&self) -> (usize, &RingKey) {
        (0, &self.keys[0])
    }

    pub(crate) fn find(&self, id: &[u8]) -> Option<(usize, &RingKey)> {
        self.keys
            .iter()
            .enumerate()
            .find(|(_, k)| k.id.as_str().as_bytes() == id)
    }

    pub(crate) fn get(&self, index: usize) -> Option<&RingKey> {
        self.keys.get(index)
    }

    /// The 1-based position of the pepper that is the same HMAC key as `key`, if any: every
    /// pepper is compared, each in constant time, with no early exit.
    pub(crate) fn position_of_key(&self, key: &Pepper) -> Option<usize> {
        let derived = DerivedKeys::derive(key);
        position_of(&self.keys, |k| k.derived.same_mac_key(&derived))
    }
}

/// The 1-based position of the first key for which `same` holds. `same` (a constant-time
/// comparison) is evaluated for every key, with no early exit; only a match, which refuses
/// the configuration, takes a branch.
fn position_of(keys: &[RingKey], same: impl Fn(&RingKey) -> subtle::Choice) -> Option<usize> {
    let mut found = None;
    for (i, k) in keys.iter().enumerate() {
        let hit = bool::from(same(k));
        if hit && found.is_none() {
            found = Some(i.saturating_add(1));
        }
    }
    found
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field(
                "ids",
                &self.keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// A per-user (per-tab) salt: 16 bytes from the OS CSPRNG, sent to the client as 22
/// characters of base64url and handed back with its entries.
///
/// Entries verify only under the salt they were sealed with, so one user's entries cannot be
/// replayed into another user's session. `Debug` is redacted; [`encode`](Self::encode) is the
/// explicit way to get the text the client stores.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Salt([u8; 16]);

impl Salt {
    /// Length in bytes.
    pub const LEN: usize = 16;
    /// Length of the encoded form in characters.
    pub const ENCODED_LEN: usize = 22;

    /// A fresh salt from the OS CSPRNG.
    ///
    /// # Panics
    /// If the operating system's random source fails; see [`try_generate`](Self::try_generate).
    #[must_use]
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.unwrap_err().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// A fresh salt from the OS CSPRNG.
    ///
    /// # Errors
    /// [`ConfigError::Randomness`] if the operating system's random source fails.
    pub fn try_generate() -> Result<Self, ConfigError> {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|_| ConfigError::Randomness)?;
        Ok(Self(bytes))
    }

    /// A salt from raw bytes (for tests and golden vectors).
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// Parses the 22-character canonical base64url form.
    ///
    /// # Errors
    /// [`ConfigError::InvalidSalt`] for anything else (length checked before decoding).
    pub fn decode(encoded: &str) -> Result<Self, ConfigError> {
        if encoded.len() != Self::ENCODED_LEN {
            return Err(ConfigError::InvalidSalt);
        }
        let mut bytes = [0u8; 16];
        match URL_SAFE_NO_PAD.decode_slice(encoded.as_bytes(), &mut bytes) {
            Ok(16) => Ok(Self(bytes)),
            _ => Err(ConfigError::InvalidSalt),
        }
    }

    /// The 22-character base64url form the client stores and sends back.
    #[must_use]
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Salt(<redacted>)")
    }
}

impl PartialEq for Salt {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Salt {}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"; // 0x00..=0x1f
    const KEY_B: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8"; // 0x20..=0x3f

    #[test]
    fn pepper_length_and_zero_checks() {
        assert_eq!(
            Pepper::try_from_bytes(&[1; 31]),
            Err(ConfigError::PepperTooShort { len: 31 })
        );
        assert_eq!(
            Pepper::try_from_bytes(&[]),
            Err(ConfigError::PepperTooShort { len: 0 })
        );
        assert_eq!(
            Pepper::try_from_bytes(&[0; 32]),
            Err(ConfigError::PepperAllZero)
        );
        assert!(matches!(
            Pepper::try_from_bytes(&[1; 1025]),
            Err(ConfigError::PepperTooLong { len: 1025 })
        ));
        assert_eq!(
            Pepper::try_from_bytes(&[1; 32]),
            Err(ConfigError::PepperLowDiversity)
        );
        assert!(Pepper::try_from_bytes(&std::array::from_fn::<u8, 32, _>(|i| i as u8)).is_ok());
        assert_ne!(Pepper::generate(), Pepper::generate());
    }

    #[test]
    fn low_diversity_peppers_are_refused() {
        let distinct = |n: usize, len: usize| -> Vec<u8> {
            (0..len)
                .map(|i| u8::try_from(i % n).unwrap() ^ 0x5c)
                .collect()
        };
        let mut one = [0u8; 32];
        one[31] = 1;
        for weak in [vec![1; 32], one.to_vec(), vec![0xFF; 32], distinct(2, 32)] {
            assert_eq!(
                Pepper::try_from_bytes(&weak),
                Err(ConfigError::PepperLowDiversity)
            );
        }
        // The boundary: 15 distinct values are refused, 16 accepted, whatever the length.
        for len in [32, 33, 64, 1024] {
            assert_eq!(
                Pepper::try_from_bytes(&distinct(15, len)),
                Err(ConfigError::PepperLowDiversity),
                "{len}"
            );
            assert!(Pepper::try_from_bytes(&distinct(16, len)).is_ok(), "{len}");
            assert!(Pepper::try_from_bytes(&distinct(32, len)).is_ok(), "{len}");
        }
        assert!(bool::from(diverse(&distinct(16, 32))));
        assert!(!bool::from(diverse(&distinct(15, 1024))));
        // The check applies to every way a pepper is made, and names no key.
        let weak = URL_SAFE_NO_PAD.encode([1u8; 32]);
        assert_eq!(
            Pepper::from_base64(&weak),
            Err(ConfigError::PepperLowDiversity)
        );
        let err = KeyRing::parse(&format!("k:{weak}")).unwrap_err();
        assert_eq!(
            err,
            ConfigError::KeyRingEntry {
                position: 1,
                problem: Box::new(ConfigError::PepperLowDiversity)
            }
        );
        assert!(!err.to_string().contains(&weak), "{err}");
        assert!(err.to_string().contains("distinct"), "{err}");
    }

    #[test]
    fn generated_peppers_are_never_weak() {
        // A random source that first returns weak bytes is drawn again...
        let mut calls = 0;
        let p = Pepper::generate_with(|b| {
            calls += 1;
            if calls < 4 {
                b.fill(7);
            } else {
                rand::rngs::OsRng.try_fill_bytes(b).unwrap();
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(calls, 4);
        assert!(Pepper::try_from_bytes(p.expose_bytes()).is_ok());
        // ... and one that never stops is broken.
        assert_eq!(
            Pepper::generate_with(|b| {
                b.fill(0);
                Ok(())
            }),
            Err(ConfigError::Randomness)
        );
        for _ in 0..1_000 {
            let p = Pepper::generate();
            assert!(Pepper::try_from_bytes(p.expose_bytes()).is_ok());
            let q = Pepper::try_generate().unwrap();
            assert!(Pepper::from_base64(&q.expose_base64()).is_ok());
        }
    }

    #[test]
    fn one_key_under_two_ids_is_refused() {
        let err = KeyRing::parse(&format!("a:{KEY_A},b:{KEY_B},c:{KEY_A}")).unwrap_err();
        assert_eq!(
            err,
            ConfigError::DuplicatePepper {
                first: 1,
                second: 3
            }
        );
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains(KEY_A) && !text.contains("AAECAw"), "{text}");
        }
        // The same HMAC key: zero-padded (HMAC pads to its 64-byte block with zeros), or a
        // key longer than the block and its SHA-256 (HMAC hashes long keys).
        let a = URL_SAFE_NO_PAD.decode(KEY_A).unwrap();
        let mut padded = a.clone();
        padded.extend_from_slice(&[0; 32]);
        let long: Vec<u8> = (0..100u8).collect();
        let hashed = <sha2::Sha256 as sha2::Digest>::digest(&long).to_vec();
        for (x, y) in [(a.clone(), padded), (long, hashed)] {
            let ring = KeyRing::new([
                (
                    KeyId::new("x").unwrap(),
                    Pepper::try_from_bytes(&x).unwrap(),
                ),
                (
                    KeyId::new("y").unwrap(),
                    Pepper::try_from_bytes(&y).unwrap(),
                ),
            ]);
            assert_eq!(
                ring.unwrap_err(),
                ConfigError::DuplicatePepper {
                    first: 1,
                    second: 2
                }
            );
        }
        // Different keys are fine, and a key is found by position.
        let ring = KeyRing::parse(&format!("a:{KEY_A},b:{KEY_B}")).unwrap();
        assert_eq!(
            ring.position_of_key(&Pepper::from_base64(KEY_B).unwrap()),
            Some(2)
        );
        assert_eq!(ring.position_of_key(&Pepper::generate()), None);
    }

    #[test]
    fn debug_does_not_leak_key() {
        let p = Pepper::from_base64(KEY_A).unwrap();
        let ring = KeyRing::parse(&format!("main:{KEY_A}")).unwrap();
        let salt = Salt::from_bytes([0xAB; 16]);
        for text in [format!("{p:?}"), format!("{ring:?}"), format!("{salt:?}")] {
            assert!(!text.contains(KEY_A), "{text}");
            assert!(!text.contains("AAECAw"), "{text}");
            assert!(!text.contains(&salt.encode()), "{text}");
            assert!(!text.contains("171"), "{text}");
        }
        assert_eq!(format!("{p:?}"), "Pepper(<redacted>)");
        assert!(format!("{ring:?}").contains("main"));
    }

    #[test]
    fn key_ids() {
        for ok in ["a", "K-1_x", &"x".repeat(32)] {
            assert!(KeyId::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", " a", "a:b", "é", &"x".repeat(33), "a,b"] {
            assert!(KeyId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ring_parse_good_and_bad() {
        let ring = KeyRing::parse(&format!(" new:{KEY_A} , old:{KEY_B}\n")).unwrap();
        assert_eq!(
            ring.ids().map(KeyId::as_str).collect::<Vec<_>>(),
            ["new", "old"]
        );
        assert_eq!(ring.sealing().1.id.as_str(), "new");
        assert_eq!(
            KeyRing::parse(&format!("a:{KEY_A},a:{KEY_B}")).unwrap_err(),
            ConfigError::DuplicateKeyId {
                first: 1,
                second: 2
            }
        );
        assert_eq!(
            KeyRing::parse(&format!("a:{KEY_A},b:{KEY_B},a:{KEY_A}")).unwrap_err(),
            ConfigError::DuplicateKeyId {
                first: 1,
                second: 3
            }
        );
        assert_eq!(
            KeyRing::parse("").unwrap_err(),
            ConfigError::KeyRingSyntax { position: 1 }
        );
        assert_eq!(
            KeyRing::parse(&format!("a:{KEY_A},")).unwrap_err(),
            ConfigError::KeyRingSyntax { position: 2 }
        );
        // A key written where the id belongs is never repeated in the error.
        let in_entry = |position, problem| ConfigError::KeyRingEntry {
            position,
            problem: Box::new(problem),
        };
        let err = KeyRing::parse(&format!("{KEY_A}:a")).unwrap_err();
        assert_eq!(err, in_entry(1, ConfigError::InvalidKeyId { len: 43 }));
        assert!(!err.to_string().contains(KEY_A));
        let err = KeyRing::parse(&format!("b:{KEY_B},a:{KEY_A}=")).unwrap_err();
        assert_eq!(err, in_entry(2, ConfigError::KeyEncoding));
        assert_eq!(
            err.to_string(),
            "key ring entry 2: key is not canonical unpadded base64url"
        );
        assert_eq!(
            KeyRing::parse("a:AAAA").unwrap_err(),
            in_entry(1, ConfigError::PepperTooShort { len: 3 })
        );
        let round = KeyRing::parse(&ring.expose_spec()).unwrap();
        assert_eq!(round.len(), 2);
    }

    #[test]
    fn errors_never_repeat_a_key_written_as_an_id() {
        // The first 32 characters of a key are a valid id: written in the id slot, a key (or a
        // shorter secret) must not come back in any error about the ring.
        let secret = &KEY_B[..32];
        assert!(KeyId::new(secret).is_ok());
        let specs = [
            format!("{secret}:{KEY_A}="),                 // not canonical base64url
            format!("{secret}:AAAA"),                     // too short
            format!("{secret}:{KEY_A},{secret}:{KEY_A}"), // the id twice
            format!("{secret}:{KEY_A},k:{KEY_A}"),        // the key twice
            format!("k:{KEY_A},{secret}:{}", URL_SAFE_NO_PAD.encode([1u8; 32])), // weak
            format!("{KEY_A}:{secret}"),                  // KEY:ID
            format!("k:{KEY_A},{secret}"),                // no colon
        ];
        for spec in &specs {
            let err = KeyRing::parse(spec).unwrap_err();
            for text in [err.to_string(), format!("{err:?}")] {
                assert!(!text.contains(secret), "{spec}: {text}");
                assert!(!text.contains(&secret[..12]), "{spec}: {text}");
                assert!(!text.contains("AAECAw"), "{spec}: {text}");
            }
        }
    }

    #[test]
    fn salt_decoding_is_strict() {
        let s = Salt::generate();
        let e = s.encode();
        assert_eq!(e.len(), 22);
        assert!(Salt::decode(&e).unwrap() == s);
        assert!(Salt::decode(&format!("{e}==")).is_err());
        assert!(Salt::decode(&e[..21]).is_err());
        assert!(
            Salt::decode(&e.replace('-', "+").replace('_', "/")).is_err()
                || !e.contains(['-', '_'])
        );
        // Non-zero trailing bits: the last char of 16 bytes carries 4 unused bits.
        assert!(Salt::decode("AAAAAAAAAAAAAAAAAAAAAB").is_err());
        assert!(Salt::decode("AAAAAAAAAAAAAAAAAAAAAA").is_ok());
        assert!(Salt::decode("AAAAAAAAAAAAAAAAAAAA A").is_err());
    }
}
