//! The wire format of one entry, shared by `seal` and `open`.
//!
//! A token is unpadded base64url (canonical only) of one of two layouts, told apart by the
//! first byte. Both start with the same header:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format version: `0x01` signed, `0x02` encrypted |
//! | 1 | key id length `L`, 1 to 32 |
//! | L | key id, `[A-Za-z0-9_-]` |
//! | 8 | time step, big-endian |
//! | 16 | state key |
//! | 8 | revision, big-endian |
//! | 4 | schema version, big-endian |
//!
//! A signed entry (version 1) continues with:
//!
//! | bytes | field |
//! |---|---|
//! | n ≥ 1 | payload: UTF-8 JSON |
//! | 32 | tag: HMAC-SHA256 |
//!
//! An encrypted entry (version 2) continues with:
//!
//! | bytes | field |
//! |---|---|
//! | 24 | nonce: random, for XChaCha20-Poly1305 |
//! | n ≥ 1 | ciphertext of the UTF-8 JSON payload (as long as the payload) |
//! | 16 | tag: Poly1305 |
//!
//! The salt, subject, namespace and OTP code are bound by the tag (signed) or by the
//! associated data (encrypted) but not carried. See SECURITY.md, section 2.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::aead::{AEAD_TAG_LEN, NONCE_LEN};
use crate::error::Reason;
use crate::mac::TAG_LEN;
use crate::secret::KeyId;
use crate::StateKey;

/// The format version of signed entries ([`EntryKind::Signed`]), unchanged since 0.1.
pub const FORMAT_VERSION: u8 = 1;

/// The format version of encrypted entries ([`EntryKind::Encrypted`]).
pub const ENCRYPTED_FORMAT_VERSION: u8 = 2;

/// Bytes of the header every token starts with, without the key id: version, key id length,
/// step, state key, revision, schema.
const HEADER_LEN: usize = 1 + 1 + 8 + 16 + 8 + 4;

/// Bytes of a signed token that are not payload, for a key id of length `id_len`
/// (`overhead_for(EntryKind::Signed, id_len)`).
#[must_use]
pub const fn overhead(id_len: usize) -> usize {
    overhead_for(EntryKind::Signed, id_len)
}

/// Bytes of a token of `kind` that are not payload (for an encrypted entry: not ciphertext of
/// the payload), for a key id of length `id_len`: the header, then the 32-byte HMAC tag
/// (signed) or the 24-byte nonce and the 16-byte Poly1305 tag (encrypted).
#[must_use]
pub const fn overhead_for(kind: EntryKind, id_len: usize) -> usize {
    let body = match kind {
        EntryKind::Signed => TAG_LEN,
        EntryKind::Encrypted => NONCE_LEN + AEAD_TAG_LEN,
    };
    id_len.saturating_add(HEADER_LEN.saturating_add(body))
}

/// How an entry is sealed: its format version.
///
/// Opening accepts both kinds whatever a [`Recovery`](crate::Recovery) seals; the kind an
/// entry had is reported in [`Opened::kind`](crate::Opened::kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EntryKind {
    /// Format version 1: the payload in clear, authenticated by a 32-byte HMAC-SHA256 tag.
    /// Anyone holding the token can read the payload. The default.
    #[default]
    Signed,
    /// Format version 2: the payload encrypted and authenticated with XChaCha20-Poly1305
    /// under a key derived per (pepper, step), with a random 24-byte nonce; the header stays
    /// readable (it is the associated data, with the salt, subject, namespace and code).
    Encrypted,
}

impl EntryKind {
    /// The format version byte tokens of this kind start with.
    #[must_use]
    pub const fn version(self) -> u8 {
        match self {
            Self::Signed => FORMAT_VERSION,
            Self::Encrypted => ENCRYPTED_FORMAT_VERSION,
        }
    }

    /// The kind of a format version byte, if this build reads it.
    #[must_use]
    pub const fn from_version(version: u8) -> Option<Self> {
        match version {
            FORMAT_VERSION => Some(Self::Signed),
            ENCRYPTED_FORMAT_VERSION => Some(Self::Encrypted),
            _ => None,
        }
    }

    /// Whether the payload is encrypted.
    #[must_use]
    pub const fn is_encrypted(self) -> bool {
        matches!(self, Self::Encrypted)
    }
}

/// A sealed entry, ready to send to the client. Tokens are not secret. The payload of a
/// signed entry is readable by anyone who holds the token (see SECURITY.md, non-goals); that
/// of an encrypted entry is not, but its header (key id, step, state key, revision, schema)
/// and its length are.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Token(String);

impl Token {
    /// The token text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token text, owned.
    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }

    pub(crate) fn from_string(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({} chars)", self.0.len())
    }
}

impl AsRef<str> for Token {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The fields of a decoded token, before (or without) verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parts<'a> {
    pub(crate) key_id: &'a [u8],
    pub(crate) step: u64,
    pub(crate) state_key: &'a [u8; 16],
    pub(crate) revision: u64,
    pub(crate) schema: u32,
    pub(crate) body: Body<'a>,
}

/// What follows the header: the payload and its tag, or the nonce, ciphertext and tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body<'a> {
    /// Version 1.
    Signed {
        payload: &'a [u8],
        tag: &'a [u8; TAG_LEN],
    },
    /// Version 2. The ciphertext is as long as the plaintext (at least one byte).
    Encrypted {
        nonce: &'a [u8; NONCE_LEN],
        ciphertext: &'a [u8],
        tag: &'a [u8; AEAD_TAG_LEN],
    },
}

impl Parts<'_> {
    /// The kind of entry (from its version byte).
    pub(crate) const fn kind(&self) -> EntryKind {
        match self.body {
            Body::Signed { .. } => EntryKind::Signed,
            Body::Encrypted { .. } => EntryKind::Encrypted,
        }
    }
}

/// Size and encoding checks: `too-large` before decoding, then strict base64url.
pub(crate) fn decode(text: &[u8], max_len: usize) -> Result<Vec<u8>, Reason> {
    let mut buf = Vec::new();
    decode_into(text, max_len, &mut buf)?;
    Ok(buf)
}

/// [`decode`] into `buf` (cleared first), so a caller opening many tokens reuses one
/// allocation. On error `buf` holds nothing meaningful.
pub(crate) fn decode_into(text: &[u8], max_len: usize, buf: &mut Vec<u8>) -> Result<(), Reason> {
    buf.clear();
    if text.len() > max_len {
        return Err(Reason::TooLarge);
    }
    if text.is_empty() {
        return Err(Reason::Malformed);
    }
    URL_SAFE_NO_PAD
        .decode_vec(text, buf)
        .map_err(|_| Reason::Malformed)
}

/// Version and layout checks on decoded bytes.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parts<'_>, Reason> {
    let (&version, rest) = bytes.split_first().ok_or(Reason::Malformed)?;
    let kind = EntryKind::from_version(version).ok_or(Reason::UnsupportedVersion)?;
    let (&id_len, rest) = rest.split_first().ok_or(Reason::Malformed)?;
    let (key_id, rest) = take(rest, usize::from(id_len))?;
    if !KeyId::is_valid(key_id) {
        return Err(Reason::Malformed);
    }
    let (step, rest) = take_array::<8>(rest)?;
    let (state_key, rest) = take_array::<16>(rest)?;
    let (revision, rest) = take_array::<8>(rest)?;
    let (schema, rest) = take_array::<4>(rest)?;
    let body = match kind {
        EntryKind::Signed => {
            let (payload, tag) = split_tag::<TAG_LEN>(rest)?;
            Body::Signed { payload, tag }
        }
        EntryKind::Encrypted => {
            let (nonce, rest) = take_array::<NONCE_LEN>(rest)?;
            let (ciphertext, tag) = split_tag::<AEAD_TAG_LEN>(rest)?;
            Body::Encrypted {
                nonce,
                ciphertext,
                tag,
            }
        }
    };
    Ok(Parts {
        key_id,
        step: u64::from_be_bytes(*step),
        state_key,
        revision: u64::from_be_bytes(*revision),
        schema: u32::from_be_bytes(*schema),
        body,
    })
}

/// Splits `rest` into at least one byte of payload (or ciphertext) and an `N`-byte tag.
fn split_tag<const N: usize>(rest: &[u8]) -> Result<(&[u8], &[u8; N]), Reason> {
    let len = rest.len().checked_sub(N).ok_or(Reason::Malformed)?;
    if len == 0 {
        return Err(Reason::Malformed);
    }
    let (payload, tag) = take(rest, len)?;
    let tag = <&[u8; N]>::try_from(tag).map_err(|_| Reason::Malformed)?;
    Ok((payload, tag))
}

fn take(b: &[u8], n: usize) -> Result<(&[u8], &[u8]), Reason> {
    b.split_at_checked(n).ok_or(Reason::Malformed)
}

fn take_array<const N: usize>(b: &[u8]) -> Result<(&[u8; N], &[u8]), Reason> {
    let (head, rest) = take(b, N)?;
    let arr = <&[u8; N]>::try_from(head).map_err(|_| Reason::Malformed)?;
    Ok((arr, rest))
}

/// Writes the header of a `kind` entry (everything before the payload, or before the nonce)
/// into `buf`.
pub(crate) fn write_header(
    buf: &mut Vec<u8>,
    kind: EntryKind,
    key_id: &KeyId,
    step: u64,
    state_key: &StateKey,
    revision: u64,
    schema: u32,
) {
    let id = key_id.as_str().as_bytes();
    buf.push(kind.version());
    // KeyId guarantees 1..=32 bytes, so this never truncates.
    buf.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    buf.extend_from_slice(id);
    buf.extend_from_slice(&step.to_be_bytes());
    buf.extend_from_slice(state_key.as_bytes());
    buf.extend_from_slice(&revision.to_be_bytes());
    buf.extend_from_slice(&schema.to_be_bytes());
}

/// Encodes token bytes as unpadded base64url.
pub(crate) fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Encodes `body || tag` as unpadded base64url without appending the tag to `body` (which
/// could reallocate and copy it): the whole 3-byte groups of `body` are encoded in place, then
/// its last 0 to 2 bytes with the tag from a small array, both straight into one buffer of the
/// exact length. Same text as [`encode`] of the concatenation, since the first part ends on a
/// group boundary.
///
/// `tag` is the 32-byte HMAC tag or the 16-byte Poly1305 tag (at most [`TAG_LEN`] bytes; a
/// longer one is encoded correctly, through the concatenation).
pub(crate) fn encode_with_tag(body: &[u8], tag: &[u8]) -> String {
    if tag.len() > TAG_LEN {
        return encode(&[body, tag].concat());
    }
    #[allow(clippy::arithmetic_side_effects)] // remainder by a non-zero constant
    let whole = body.len() - body.len() % 3;
    let (groups, rest) = body.split_at(whole);
    let mut last = [0u8; 2 + TAG_LEN];
    let n = last
        .iter_mut()
        .zip(rest.iter().chain(tag))
        .map(|(slot, b)| *slot = *b)
        .count();
    let tail = last.get(..n).unwrap_or_default();
    let mut out = vec![0u8; encoded_len(body.len().saturating_add(tag.len()))];
    let written = out
        .split_at_mut_checked(encoded_len(whole))
        .and_then(|(head_out, tail_out)| {
            let a = URL_SAFE_NO_PAD.encode_slice(groups, head_out).ok()?;
            let b = URL_SAFE_NO_PAD.encode_slice(tail, tail_out).ok()?;
            Some(a.saturating_add(b))
        });
    match (written, String::from_utf8(out)) {
        (Some(len), Ok(text)) if len == text.len() => text,
        // Unreachable (the lengths are exact and base64 is ASCII); stay correct regardless.
        _ => encode(&[body, tag].concat()),
    }
}

/// Length of the base64url text for `n` bytes.
pub(crate) const fn encoded_len(n: usize) -> usize {
    let full = (n / 3).saturating_mul(4);
    #[allow(clippy::arithmetic_side_effects)] // remainder by a non-zero constant
    match n % 3 {
        0 => full,
        1 => full.saturating_add(2),
        _ => full.saturating_add(3),
    }
}

/// What a token says about itself, unverified: for `inspect`, logs and fuzzing.
///
/// For an encrypted entry only the header is shown: `payload` is empty, `payload_len` is the
/// length of the ciphertext (which is the plaintext's), and nothing is decrypted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Inspected {
    /// Always false: nothing here has been checked against a key.
    pub verified: bool,
    /// Format version.
    pub version: u8,
    /// The kind of entry the version byte says it is.
    pub kind: EntryKind,
    /// Id of the key the token claims to be sealed under.
    pub key_id: String,
    /// Time step the token claims.
    pub step: u64,
    /// State key, as hex.
    pub key: String,
    /// Revision.
    pub rev: u64,
    /// Schema version.
    pub schema: u32,
    /// Payload length in bytes (for an encrypted entry, of the ciphertext without its tag,
    /// which is the length of the plaintext).
    pub payload_len: usize,
    /// The payload bytes of a signed entry (readable JSON when authentic); empty for an
    /// encrypted entry.
    #[serde(skip)]
    pub payload: Vec<u8>,
    /// The nonce of an encrypted entry, as hex (`None` for a signed entry).
    pub nonce: Option<String>,
    /// The tag, as hex (32 bytes for a signed entry, 16 for an encrypted one).
    pub tag: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes a token without verifying it. Needs no keys; trusts nothing; decrypts nothing.
///
/// # Errors
/// A [`Rejection`](crate::Rejection) with `too-large`, `malformed` or `unsupported-version`.
pub fn inspect(token: &str, max_len: usize) -> Result<Inspected, crate::Rejection> {
    let bytes = decode(token.as_bytes(), max_len)?;
    let p = parse(&bytes)?;
    let (payload_len, payload, nonce, tag) = match p.body {
        Body::Signed { payload, tag } => (payload.len(), payload.to_vec(), None, hex(tag)),
        Body::Encrypted {
            nonce,
            ciphertext,
            tag,
        } => (ciphertext.len(), Vec::new(), Some(hex(nonce)), hex(tag)),
    };
    Ok(Inspected {
        verified: false,
        version: p.kind().version(),
        kind: p.kind(),
        key_id: String::from_utf8_lossy(p.key_id).into_owned(),
        step: p.step,
        key: StateKey::from_bytes(*p.state_key).to_string(),
        rev: p.revision,
        schema: p.schema,
        payload_len,
        payload,
        nonce,
        tag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: EntryKind) -> Vec<u8> {
        let mut b = Vec::new();
        write_header(
            &mut b,
            kind,
            &KeyId::new("k1").unwrap(),
            7,
            &StateKey::from_bytes([3; 16]),
            9,
            2,
        );
        b
    }

    fn sample() -> Vec<u8> {
        let mut b = header(EntryKind::Signed);
        b.extend_from_slice(b"{}");
        b.extend_from_slice(&[0xEE; 32]);
        b
    }

    /// An encrypted entry's layout with a 3-byte ciphertext.
    fn encrypted_sample() -> Vec<u8> {
        let mut b = header(EntryKind::Encrypted);
        b.extend_from_slice(&[0x4E; NONCE_LEN]);
        b.extend_from_slice(b"abc");
        b.extend_from_slice(&[0xEE; AEAD_TAG_LEN]);
        b
    }

    #[test]
    fn layout_round_trips() {
        let b = sample();
        assert_eq!(b.len(), overhead(2) + 2);
        let p = parse(&b).unwrap();
        assert_eq!(p.key_id, b"k1");
        assert_eq!((p.step, p.revision, p.schema), (7, 9, 2));
        assert_eq!(p.kind(), EntryKind::Signed);
        assert_eq!(
            p.body,
            Body::Signed {
                payload: b"{}",
                tag: &[0xEE; 32]
            }
        );
        let text = encode(&b);
        assert_eq!(text.len(), encoded_len(b.len()));
        assert_eq!(decode(text.as_bytes(), 1000).unwrap(), b);
    }

    #[test]
    fn encrypted_layout_round_trips() {
        let b = encrypted_sample();
        assert_eq!(b[0], 2);
        assert_eq!(b.len(), overhead_for(EntryKind::Encrypted, 2) + 3);
        assert_eq!(overhead_for(EntryKind::Encrypted, 2), 40 + 24 + 16);
        assert_eq!(overhead_for(EntryKind::Signed, 2), overhead(2));
        let p = parse(&b).unwrap();
        assert_eq!(p.key_id, b"k1");
        assert_eq!((p.step, p.revision, p.schema), (7, 9, 2));
        assert_eq!(p.kind(), EntryKind::Encrypted);
        assert_eq!(
            p.body,
            Body::Encrypted {
                nonce: &[0x4E; NONCE_LEN],
                ciphertext: b"abc",
                tag: &[0xEE; AEAD_TAG_LEN]
            }
        );
    }

    #[test]
    fn truncations_without_room_for_a_payload_are_malformed() {
        let b = sample();
        for n in 0..=overhead(2) {
            assert_eq!(parse(&b[..n]), Err(Reason::Malformed), "len {n}");
        }
        // Longer truncations still have the shape of a token; the MAC refuses them (tested
        // end to end in tests/adversarial.rs).
        assert!(parse(&b[..overhead(2) + 1]).is_ok());
        // Encrypted: shorter than header + nonce + one byte + tag is malformed.
        let b = encrypted_sample();
        let min = overhead_for(EntryKind::Encrypted, 2);
        for n in 0..=min {
            assert_eq!(parse(&b[..n]), Err(Reason::Malformed), "len {n}");
        }
        assert!(parse(&b[..min + 1]).is_ok());
    }

    #[test]
    fn other_versions_and_bad_ids() {
        for version in [0, 3, 0x81, 0xFF] {
            let mut b = sample();
            b[0] = version;
            assert_eq!(parse(&b), Err(Reason::UnsupportedVersion), "{version}");
        }
        // A signed entry relabelled as encrypted parses as one when it is long enough (and
        // fails the AEAD); the other way round, as a signed one (and fails the MAC).
        let mut b = sample();
        b[0] = 2;
        assert_eq!(
            parse(&b),
            Err(Reason::Malformed),
            "too short for a nonce and a tag"
        );
        let mut b = header(EntryKind::Signed);
        b.extend_from_slice(br#"{"count":41}"#);
        b.extend_from_slice(&[0xEE; 32]);
        b[0] = 2;
        assert_eq!(parse(&b).map(|p| p.kind()), Ok(EntryKind::Encrypted));
        let mut b = encrypted_sample();
        b[0] = 1;
        assert_eq!(parse(&b).map(|p| p.kind()), Ok(EntryKind::Signed));
        for mut b in [sample(), encrypted_sample()] {
            let mut c = b.clone();
            c[2] = b':';
            assert_eq!(parse(&c), Err(Reason::Malformed));
            b[1] = 0;
            assert_eq!(parse(&b), Err(Reason::Malformed));
        }
    }

    #[test]
    fn kinds_and_versions() {
        for kind in [EntryKind::Signed, EntryKind::Encrypted] {
            assert_eq!(EntryKind::from_version(kind.version()), Some(kind));
        }
        assert_eq!(EntryKind::Signed.version(), FORMAT_VERSION);
        assert_eq!(EntryKind::Encrypted.version(), ENCRYPTED_FORMAT_VERSION);
        assert_eq!(EntryKind::from_version(3), None);
        assert!(EntryKind::Encrypted.is_encrypted() && !EntryKind::Signed.is_encrypted());
        assert_eq!(EntryKind::default(), EntryKind::Signed);
    }

    #[test]
    fn inspect_shows_only_the_header_of_an_encrypted_entry() {
        let i = inspect(&encode(&encrypted_sample()), 1000).unwrap();
        assert!(!i.verified);
        assert_eq!((i.version, i.kind), (2, EntryKind::Encrypted));
        assert_eq!(
            (i.key_id.as_str(), i.step, i.rev, i.schema),
            ("k1", 7, 9, 2)
        );
        assert_eq!(i.payload_len, 3);
        assert!(i.payload.is_empty());
        assert_eq!(i.nonce.as_deref(), Some("4e".repeat(24).as_str()));
        assert_eq!(i.tag, "ee".repeat(16));
        let json = serde_json::to_value(&i).unwrap();
        assert_eq!(json["kind"], "encrypted");
        let s = inspect(&encode(&sample()), 1000).unwrap();
        assert_eq!(serde_json::to_value(&s).unwrap()["kind"], "signed");
        assert_eq!(
            (s.kind, s.nonce, s.payload),
            (EntryKind::Signed, None, b"{}".to_vec())
        );
    }

    #[test]
    fn size_is_checked_before_decoding() {
        assert_eq!(decode(&[b'!'; 11], 10), Err(Reason::TooLarge));
        assert_eq!(decode(b"", 10), Err(Reason::Malformed));
        assert_eq!(decode(b"AAA=", 10), Err(Reason::Malformed));
        assert_eq!(decode(b"AB", 10), Err(Reason::Malformed));
        assert_eq!(decode(b"A", 10), Err(Reason::Malformed));
        assert_eq!(decode(b"AA A", 10), Err(Reason::Malformed));
        assert_eq!(decode(b"+/AA", 10), Err(Reason::Malformed));
    }

    #[test]
    fn encoding_with_the_tag_apart_is_encoding_the_concatenation() {
        for tag in [
            &[0xA5; TAG_LEN][..],
            &[0x5A; AEAD_TAG_LEN],
            &[0x77; TAG_LEN + 1],
        ] {
            for n in 0..50 {
                let body: Vec<u8> = (0..n).map(|i| i as u8 ^ 0x3C).collect();
                let whole = [&body[..], tag].concat();
                let text = encode_with_tag(&body, tag);
                assert_eq!(text, encode(&whole), "body of {n} bytes");
                assert_eq!(text.len(), text.capacity(), "body of {n} bytes");
            }
        }
    }

    #[test]
    fn encoded_len_matches_base64() {
        for n in 0..50 {
            assert_eq!(encoded_len(n), encode(&vec![0; n]).len());
        }
    }
}
