//! The MAC input: a pre-authentication encoding (PASETO's PAE) of every field the tag vouches
//! for, streamed into HMAC-SHA256 without building a buffer.
//!
//! `PAE(p_1, ..., p_n) = LE64(n) || LE64(len(p_1)) || p_1 || ... || LE64(len(p_n)) || p_n`
//!
//! Because every piece is length-prefixed and the count comes first, no two different field
//! lists encode to the same bytes (salt "ab" + key "c" is not salt "a" + key "bc").

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256, the only MAC used here.
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Length of a tag in bytes: the full, untruncated HMAC-SHA256 output.
pub(crate) const TAG_LEN: usize = 32;

/// Domain-separation label of entry tags.
pub(crate) const ENTRY_PURPOSE: &[u8] = b"state-recovery/entry";

/// Where a PAE encoding goes: streamed into a MAC, or written into a buffer (the associated
/// data of an encrypted entry, which the AEAD takes as one slice).
pub(crate) trait PaeSink {
    /// Appends `bytes`.
    fn absorb(&mut self, bytes: &[u8]);
}

impl PaeSink for HmacSha256 {
    fn absorb(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl PaeSink for Vec<u8> {
    fn absorb(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Feeds a PAE encoding into a sink. Each piece is given as one or more slices that are
/// concatenated (so a flag byte and a value can form one piece without copying).
pub(crate) fn pae_update(sink: &mut impl PaeSink, pieces: &[&[&[u8]]]) {
    sink.absorb(&le64(pieces.len()));
    pae_pieces(sink, pieces);
}

/// The pieces of a PAE encoding without the leading count: for an encoding fed in parts.
fn pae_pieces(sink: &mut impl PaeSink, pieces: &[&[&[u8]]]) {
    for parts in pieces {
        let len = parts.iter().fold(0usize, |n, p| n.saturating_add(p.len()));
        sink.absorb(&le64(len));
        for p in *parts {
            sink.absorb(p);
        }
    }
}

/// The PAE encoding as bytes (for known-answer tests and documentation).
#[must_use]
pub fn pae(pieces: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&le64(pieces.len()));
    for p in pieces {
        out.extend_from_slice(&le64(p.len()));
        out.extend_from_slice(p);
    }
    out
}

fn le64(n: usize) -> [u8; 8] {
    (n as u64).to_le_bytes()
}

/// Pieces of an entry's PAE that [`feed_prefix`] feeds (shared by every entry of one key id
/// and step).
const PREFIX_PIECES: usize = 6;
/// Pieces of an entry's PAE that [`Binding::feed`] feeds (each entry's own, but its payload).
const BINDING_PIECES: usize = 5;
/// Number of pieces in a signed entry's PAE, the count it starts with: the prefix, the
/// binding and the payload. Derived, not kept by hand: each part is fed from an array typed
/// `[_; PREFIX_PIECES]` / `[_; BINDING_PIECES]` / `[_; 1]`, so a piece added to either
/// without updating its count does not compile.
pub(crate) const ENTRY_PIECES: usize = PREFIX_PIECES + BINDING_PIECES + 1;
/// Number of pieces in an encrypted entry's associated data: the same prefix and binding,
/// without the payload (which is the AEAD's plaintext).
pub(crate) const AD_PIECES: usize = PREFIX_PIECES + BINDING_PIECES;

/// What every entry of one (key id, step) shares, after its version and purpose.
#[derive(Clone, Copy)]
pub(crate) struct StepFields<'a> {
    pub(crate) namespace: &'a [u8],
    pub(crate) key_id: &'a [u8],
    pub(crate) step: u64,
    /// The OTP code of the step, 8 ASCII digits.
    pub(crate) code: &'a [u8],
}

/// Feeds the start of an entry's PAE that is the same for every entry of one (key id, step):
/// the piece count, then version, purpose, namespace, key id, step and OTP code. The step-key
/// cache stores the MAC state after this prefix (signed entries; `count` is
/// [`ENTRY_PIECES`], `purpose` [`ENTRY_PURPOSE`]) or these bytes (the associated data of
/// encrypted entries; [`AD_PIECES`], `aead::ENCRYPTED_PURPOSE`), so each entry only feeds
/// its own fields.
pub(crate) fn feed_prefix(
    sink: &mut impl PaeSink,
    count: usize,
    version: u8,
    purpose: &[u8],
    step: &StepFields<'_>,
) {
    sink.absorb(&le64(count));
    let pieces: [&[&[u8]]; PREFIX_PIECES] = [
        &[&[version]],
        &[purpose],
        &[step.namespace],
        &[step.key_id],
        &[&step.step.to_be_bytes()],
        &[step.code],
    ];
    pae_pieces(sink, &pieces);
}

/// [`feed_prefix`] for a signed (format version 1) entry.
pub(crate) fn feed_entry_prefix(
    mac: &mut HmacSha256,
    version: u8,
    namespace: &[u8],
    key_id: &[u8],
    step: u64,
    code: &[u8],
) {
    let step = StepFields {
        namespace,
        key_id,
        step,
        code,
    };
    feed_prefix(mac, ENTRY_PIECES, version, ENTRY_PURPOSE, &step);
}

/// Who and what an entry is for, after the (key id, step) prefix: what the tag of a signed
/// entry and the associated data of an encrypted one bind, in that order.
#[derive(Clone, Copy)]
pub(crate) struct Binding<'a> {
    pub(crate) salt: &'a [u8; 16],
    pub(crate) subject: Option<&'a [u8]>,
    pub(crate) state_key: &'a [u8; 16],
    pub(crate) revision: u64,
    pub(crate) schema: u32,
}

impl Binding<'_> {
    /// Feeds salt, presence ‖ subject, state key, revision and schema.
    pub(crate) fn feed(&self, sink: &mut impl PaeSink) {
        let (flag, subject): (&[u8], &[u8]) = match self.subject {
            None => (&[0], &[]),
            Some(s) => (&[1], s),
        };
        let pieces: [&[&[u8]]; BINDING_PIECES] = [
            &[self.salt],
            &[flag, subject],
            &[self.state_key],
            &[&self.revision.to_be_bytes()],
            &[&self.schema.to_be_bytes()],
        ];
        pae_pieces(sink, &pieces);
    }
}

/// The fields a signed entry's tag binds after the (key id, step) prefix, in MAC order.
#[derive(Clone, Copy)]
pub(crate) struct EntryFields<'a> {
    pub(crate) binding: Binding<'a>,
    pub(crate) payload: &'a [u8],
}

impl EntryFields<'_> {
    /// Feeds the rest of the entry's PAE into `mac`, which is keyed with the step key and has
    /// absorbed [`feed_entry_prefix`].
    pub(crate) fn feed(&self, mac: &mut HmacSha256) {
        self.binding.feed(mac);
        let payload: [&[&[u8]]; 1] = [&[self.payload]];
        pae_pieces(mac, &payload);
    }

    /// The tag, from the prefixed step-key MAC state.
    pub(crate) fn tag(&self, mut mac: HmacSha256) -> [u8; TAG_LEN] {
        self.feed(&mut mac);
        mac.finalize().into_bytes().into()
    }

    /// Checks a tag in constant time with `verify_slice` (full length only).
    pub(crate) fn verify(&self, mut mac: HmacSha256, tag: &[u8]) -> bool {
        self.feed(&mut mac);
        mac.verify_slice(tag).is_ok()
    }
}

/// HMAC-SHA256 of `msg` under `key`, through the same MAC type the crate uses for entries.
#[must_use]
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = keyed(key);
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA256 of `msg` under `key`, written straight into `out`: for derived secrets, so
/// that no copy of the result is left in a temporary. (The `hmac` crate's own temporaries,
/// the padded key block and the inner hash, are beyond reach: see SECURITY.md.)
pub(crate) fn hmac_sha256_into(key: &[u8], msg: &[u8], out: &mut [u8; 32]) {
    let mut mac = keyed(key);
    mac.update(msg);
    finalize_into(mac, out);
}

/// Finalizes `mac` straight into `out` (no intermediate copy of the tag).
pub(crate) fn finalize_into(mac: HmacSha256, out: &mut [u8; 32]) {
    hmac::digest::FixedOutput::finalize_into(mac, out.into());
}

/// A MAC state keyed with `key`. HMAC accepts keys of any length.
pub(crate) fn keyed(key: &[u8]) -> HmacSha256 {
    match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        // HMAC's `new_from_slice` only fails for MACs with fixed key sizes; not HMAC.
        Err(_) => unreachable_hmac(),
    }
}

#[cold]
fn unreachable_hmac() -> HmacSha256 {
    <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_known_answers_from_paseto() {
        // PASETO spec, "PAE": PAE([]) and PAE([""]) and PAE(["test"]).
        assert_eq!(pae(&[]), b"\x00\x00\x00\x00\x00\x00\x00\x00");
        assert_eq!(
            pae(&[b""]),
            b"\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
        );
        assert_eq!(
            pae(&[b"test"]),
            b"\x01\x00\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00test"
        );
    }

    #[test]
    fn pae_is_unambiguous() {
        assert_ne!(pae(&[b"ab", b"c"]), pae(&[b"a", b"bc"]));
        assert_ne!(pae(&[b"abc"]), pae(&[b"ab", b"c"]));
        assert_ne!(pae(&[b"", b"a"]), pae(&[b"a", b""]));
    }

    #[test]
    fn streamed_pae_equals_buffered_pae() {
        let mut streamed = keyed(b"k");
        pae_update(&mut streamed, &[&[b"ab"], &[b"x", b"yz"], &[]]);
        let buffered = hmac_sha256(b"k", &pae(&[b"ab", b"xyz", b""]));
        assert_eq!(<[u8; 32]>::from(streamed.finalize().into_bytes()), buffered);
    }

    /// The streamed entry encoding (prefix, then fields) is the PAE of exactly the twelve
    /// pieces of SECURITY.md 2.3, its count included.
    #[test]
    fn entry_encoding_is_the_pae_of_its_pieces() {
        assert_eq!((ENTRY_PIECES, AD_PIECES), (12, 11));
        for subject in [None, Some(&b""[..]), Some(&b"user-1"[..])] {
            let fields = EntryFields {
                binding: Binding {
                    salt: &[7; 16],
                    subject,
                    state_key: &[9; 16],
                    revision: 3,
                    schema: 2,
                },
                payload: br#"{"n":1}"#,
            };
            let mut mac = keyed(b"step key");
            feed_entry_prefix(&mut mac, 1, b"ns", b"k1", 118_055, b"12345678");
            let streamed = fields.tag(mac);
            let presence = match subject {
                None => vec![0],
                Some(s) => [&[1][..], s].concat(),
            };
            let buffered = hmac_sha256(
                b"step key",
                &pae(&[
                    &[1],
                    ENTRY_PURPOSE,
                    b"ns",
                    b"k1",
                    &118_055u64.to_be_bytes(),
                    b"12345678",
                    &[7; 16],
                    &presence,
                    &[9; 16],
                    &3u64.to_be_bytes(),
                    &2u32.to_be_bytes(),
                    br#"{"n":1}"#,
                ]),
            );
            assert_eq!(streamed, buffered);
        }
    }

    #[test]
    fn in_place_hmac_equals_hmac() {
        let mut out = [0u8; 32];
        hmac_sha256_into(b"Jefe", b"what do ya want for nothing?", &mut out);
        assert_eq!(out, hmac_sha256(b"Jefe", b"what do ya want for nothing?"));
    }

    #[test]
    fn hmac_sha256_rfc4231_case_2() {
        let tag = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            tag.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
