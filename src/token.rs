//! The wire format of one entry, shared by `seal` and `open`.
//!
//! A token is unpadded base64url (canonical only) of:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format version, `0x01` |
//! | 1 | key id length `L`, 1 to 32 |
//! | L | key id, `[A-Za-z0-9_-]` |
//! | 8 | time step, big-endian |
//! | 16 | state key |
//! | 8 | revision, big-endian |
//! | 4 | schema version, big-endian |
//! | n ≥ 1 | payload: UTF-8 JSON |
//! | 32 | tag: HMAC-SHA256 |
//!
//! The salt, subject, namespace and OTP code are bound by the tag but not carried.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::error::Reason;
use crate::mac::TAG_LEN;
use crate::secret::KeyId;
use crate::StateKey;

/// The only format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// Bytes of a token that are not payload, for a key id of length `id_len`.
#[must_use]
pub const fn overhead(id_len: usize) -> usize {
    id_len.saturating_add(1 + 1 + 8 + 16 + 8 + 4 + TAG_LEN)
}

/// A sealed entry, ready to send to the client. Tokens are not secret: the payload is
/// readable by anyone who holds the token (see SECURITY.md, non-goals).
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
    pub(crate) payload: &'a [u8],
    pub(crate) tag: &'a [u8],
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
    if version != FORMAT_VERSION {
        return Err(Reason::UnsupportedVersion);
    }
    let (&id_len, rest) = rest.split_first().ok_or(Reason::Malformed)?;
    let (key_id, rest) = take(rest, usize::from(id_len))?;
    if !KeyId::is_valid(key_id) {
        return Err(Reason::Malformed);
    }
    let (step, rest) = take_array::<8>(rest)?;
    let (state_key, rest) = take_array::<16>(rest)?;
    let (revision, rest) = take_array::<8>(rest)?;
    let (schema, rest) = take_array::<4>(rest)?;
    let payload_len = rest.len().checked_sub(TAG_LEN).ok_or(Reason::Malformed)?;
    if payload_len == 0 {
        return Err(Reason::Malformed);
    }
    let (payload, tag) = rest
        .split_at_checked(payload_len)
        .ok_or(Reason::Malformed)?;
    Ok(Parts {
        key_id,
        step: u64::from_be_bytes(*step),
        state_key,
        revision: u64::from_be_bytes(*revision),
        schema: u32::from_be_bytes(*schema),
        payload,
        tag,
    })
}

fn take(b: &[u8], n: usize) -> Result<(&[u8], &[u8]), Reason> {
    b.split_at_checked(n).ok_or(Reason::Malformed)
}

fn take_array<const N: usize>(b: &[u8]) -> Result<(&[u8; N], &[u8]), Reason> {
    let (head, rest) = take(b, N)?;
    let arr = <&[u8; N]>::try_from(head).map_err(|_| Reason::Malformed)?;
    Ok((arr, rest))
}

/// Writes the header (everything before the payload) into `buf`.
pub(crate) fn write_header(
    buf: &mut Vec<u8>,
    key_id: &KeyId,
    step: u64,
    state_key: &StateKey,
    revision: u64,
    schema: u32,
) {
    let id = key_id.as_str().as_bytes();
    buf.push(FORMAT_VERSION);
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
pub(crate) fn encode_with_tag(body: &[u8], tag: &[u8; TAG_LEN]) -> String {
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
    let mut out = vec![0u8; encoded_len(body.len().saturating_add(TAG_LEN))];
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
        _ => encode(&[body, tag.as_slice()].concat()),
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Inspected {
    /// Always false: nothing here has been checked against a key.
    pub verified: bool,
    /// Format version.
    pub version: u8,
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
    /// Payload length in bytes.
    pub payload_len: usize,
    /// The payload bytes (readable JSON when authentic).
    #[serde(skip)]
    pub payload: Vec<u8>,
    /// The tag, as hex.
    pub tag: String,
}

/// Decodes a token without verifying it. Needs no keys; trusts nothing.
///
/// # Errors
/// A [`Rejection`](crate::Rejection) with `too-large`, `malformed` or `unsupported-version`.
pub fn inspect(token: &str, max_len: usize) -> Result<Inspected, crate::Rejection> {
    let bytes = decode(token.as_bytes(), max_len)?;
    let p = parse(&bytes)?;
    Ok(Inspected {
        verified: false,
        version: FORMAT_VERSION,
        key_id: String::from_utf8_lossy(p.key_id).into_owned(),
        step: p.step,
        key: StateKey::from_bytes(*p.state_key).to_string(),
        rev: p.revision,
        schema: p.schema,
        payload_len: p.payload.len(),
        payload: p.payload.to_vec(),
        tag: p.tag.iter().map(|b| format!("{b:02x}")).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut b = Vec::new();
        write_header(
            &mut b,
            &KeyId::new("k1").unwrap(),
            7,
            &StateKey::from_bytes([3; 16]),
            9,
            2,
        );
        b.extend_from_slice(b"{}");
        b.extend_from_slice(&[0xEE; 32]);
        b
    }

    #[test]
    fn layout_round_trips() {
        let b = sample();
        assert_eq!(b.len(), overhead(2) + 2);
        let p = parse(&b).unwrap();
        assert_eq!(p.key_id, b"k1");
        assert_eq!((p.step, p.revision, p.schema), (7, 9, 2));
        assert_eq!(p.payload, b"{}");
        assert_eq!(p.tag, &[0xEE; 32]);
        let text = encode(&b);
        assert_eq!(text.len(), encoded_len(b.len()));
        assert_eq!(decode(text.as_bytes(), 1000).unwrap(), b);
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
    }

    #[test]
    fn other_versions_and_bad_ids() {
        let mut b = sample();
        b[0] = 2;
        assert_eq!(parse(&b), Err(Reason::UnsupportedVersion));
        let mut b = sample();
        b[2] = b':';
        assert_eq!(parse(&b), Err(Reason::Malformed));
        let mut b = sample();
        b[1] = 0;
        assert_eq!(parse(&b), Err(Reason::Malformed));
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
        let tag = [0xA5; TAG_LEN];
        for n in 0..50 {
            let body: Vec<u8> = (0..n).map(|i| i as u8 ^ 0x3C).collect();
            let whole = [&body[..], &tag[..]].concat();
            let text = encode_with_tag(&body, &tag);
            assert_eq!(text, encode(&whole), "body of {n} bytes");
            assert_eq!(text.len(), text.capacity(), "body of {n} bytes");
        }
    }

    #[test]
    fn encoded_len_matches_base64() {
        for n in 0..50 {
            assert_eq!(encoded_len(n), encode(&vec![0; n]).len());
        }
    }
}
