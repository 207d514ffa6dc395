//! Outbound: value -> serde_json -> PAE -> HMAC with the step key -> base64url token
//! (signed), or value -> serde_json -> XChaCha20-Poly1305 with the entry key, the PAE of the
//! header and bindings as associated data -> base64url token (encrypted). Mirrors `open.rs`
//! step for step.

use std::cell::Cell;
use std::io;

use rand::rand_core::TryRngCore as _;
use serde::Serialize;
use serde_json::ser::Formatter;

use crate::aead::{PlainBuf, AEAD_TAG_LEN, NONCE_LEN};
use crate::error::SealError;
use crate::finite::Finite;
use crate::key::StateKey;
use crate::mac::{EntryFields, TAG_LEN};
use crate::otp::StepKey;
use crate::payload::{depth_within, has_reserved_key};
use crate::recovery::{Recovery, Scope};
use crate::secret::RingKey;
use crate::token::{self, EntryKind, Token};

/// Where an encrypted entry's nonce comes from. Every public sealing path uses
/// [`Nonce::Random`]; `Fixed` is reachable only through the hidden
/// `fuzzing::seal_encrypted_with_fixed_nonce` (golden vectors and tests).
#[derive(Clone, Copy)]
pub(crate) enum Nonce {
    /// 24 bytes from the operating system's CSPRNG, drawn per seal.
    Random,
    /// A given nonce: test vectors only (reusing a nonce under one key breaks confidentiality
    /// and authenticity, so nothing in the crate's own paths passes one).
    Fixed([u8; NONCE_LEN]),
}

impl Nonce {
    fn draw(self) -> Result<[u8; NONCE_LEN], SealError> {
        match self {
            Self::Random => {
                let mut nonce = [0u8; NONCE_LEN];
                rand::rngs::OsRng
                    .try_fill_bytes(&mut nonce)
                    .map_err(|_| SealError::Randomness)?;
                Ok(nonce)
            }
            Self::Fixed(nonce) => Ok(nonce),
        }
    }
}

/// Where and under what a seal happens: the clock reading and its step, the sealing key.
struct SealPoint<'r> {
    now: u64,
    step: u64,
    index: usize,
    ring_key: &'r RingKey,
}

impl Recovery {
    /// Seals `value` as the entry for `key` at `revision`, with the app's `schema` version for
    /// this state, bound to `scope` (salt and optional subject), under the ring's first key and
    /// the current time step, as the kind this recovery seals
    /// ([`entry_kind`](Self::entry_kind): signed unless built with
    /// [`RecoveryBuilder::encrypted`](crate::RecoveryBuilder::encrypted)).
    ///
    /// # Errors
    /// [`SealError`] if the value does not serialize, holds a non-finite float, nests deeper
    /// than the depth limit, or would make a token over the size limit;
    /// [`SealError::ClockOutOfRange`] if the clock reads a time before 1970 or past what the
    /// step arithmetic covers ([`OtpSettings::covers`](crate::OtpSettings::covers));
    /// [`SealError::Randomness`] if an encrypted entry's nonce cannot be drawn.
    pub fn seal<T: Serialize + ?Sized>(
        &self,
        scope: &Scope<'_>,
        key: StateKey,
        revision: u64,
        schema: u32,
        value: &T,
    ) -> Result<Token, SealError> {
        self.seal_with(self.entry_kind(), scope, key, revision, schema, value)
    }

    /// [`seal`](Self::seal) as the given kind, whatever this recovery seals by default:
    /// [`EntryKind::Encrypted`] encrypts the payload (XChaCha20-Poly1305, a fresh random
    /// nonce per call), [`EntryKind::Signed`] leaves it readable. The size limits apply to the
    /// token as sealed (an encrypted token is 8 bytes of overhead longer, 11 characters).
    ///
    /// # Errors
    /// As [`seal`](Self::seal).
    pub fn seal_with<T: Serialize + ?Sized>(
        &self,
        kind: EntryKind,
        scope: &Scope<'_>,
        key: StateKey,
        revision: u64,
        schema: u32,
        value: &T,
    ) -> Result<Token, SealError> {
        self.seal_stepped(kind, scope, key, revision, schema, value)
            .map(|(token, _)| token)
    }

    /// [`seal_with`](Self::seal_with), and the time step the entry was sealed in (what a
    /// connection records for its refresh, without reading the clock again).
    pub(crate) fn seal_stepped<T: Serialize + ?Sized>(
        &self,
        kind: EntryKind,
        scope: &Scope<'_>,
        key: StateKey,
        revision: u64,
        schema: u32,
        value: &T,
    ) -> Result<(Token, u64), SealError> {
        match kind {
            EntryKind::Signed => self.seal_signed(scope, key, revision, schema, value),
            EntryKind::Encrypted => {
                self.seal_encrypted(scope, key, revision, schema, value, Nonce::Random)
            }
        }
    }

    /// The clock, its step and the sealing key. A clock before 1970, or past what the step
    /// arithmetic covers, seals nothing (rather than sealing at step 0, or in a saturated
    /// window).
    fn seal_point(&self) -> Result<SealPoint<'_>, SealError> {
        let inner = &*self.inner;
        let (now, step) = inner
            .otp
            .covered(inner.clock.checked_now())
            .map_err(|_| SealError::ClockOutOfRange)?;
        let (index, ring_key) = inner.ring.sealing();
        Ok(SealPoint {
            now,
            step,
            index,
            ring_key,
        })
    }

    /// The step key for the seal point. (`get` is `None` only for an index outside the ring,
    /// never the sealing one.)
    fn seal_key(&self, at: &SealPoint<'_>) -> Result<StepKey, SealError> {
        self.inner
            .step_key(at.index, at.step, at.now)
            .ok_or(SealError::ClockOutOfRange)
    }

    /// `too-large` for a token of `len` characters over the cap.
    fn check_len(&self, len: usize) -> Result<(), SealError> {
        let max = self.inner.limits.max_token_bytes();
        if len > max {
            return Err(SealError::TooLarge { len, max });
        }
        Ok(())
    }

    /// Version 1.
    fn seal_signed<T: Serialize + ?Sized>(
        &self,
        scope: &Scope<'_>,
        key: StateKey,
        revision: u64,
        schema: u32,
        value: &T,
    ) -> Result<(Token, u64), SealError> {
        let at = self.seal_point()?;

        // 1. Header, then the payload serialized straight after it (no copy), with the
        //    checks of `write_payload`.
        let mut buf = Vec::with_capacity(256);
        let id = &at.ring_key.id;
        token::write_header(
            &mut buf,
            EntryKind::Signed,
            id,
            at.step,
            &key,
            revision,
            schema,
        );
        let payload_start = buf.len();
        write_payload(&mut buf, value, self.inner.limits.max_depth())?;
        let payload = buf.get(payload_start..).unwrap_or_default();
        check_reserved(payload)?;

        // 2. Size, before any MAC work.
        self.check_len(token::encoded_len(buf.len().saturating_add(TAG_LEN)))?;

        // 3. The step key for (key id, step), then one HMAC over the entry's fields.
        let step_key = self.seal_key(&at)?;
        let fields = EntryFields {
            binding: scope.binding(key.as_bytes(), revision, schema),
            payload,
        };
        let tag = fields.tag(step_key.mac);

        // 4. Tag last, then base64url (the tag is not copied into `buf`: no reallocation).
        let token = Token::from_string(token::encode_with_tag(&buf, &tag));
        Ok((token, at.step))
    }

    /// Version 2. The token's bytes are built in a [`PlainBuf`] (wiped on drop and when it
    /// grows), and the payload is encrypted in place: no copy of the plaintext outlives the
    /// call.
    pub(crate) fn seal_encrypted<T: Serialize + ?Sized>(
        &self,
        scope: &Scope<'_>,
        key: StateKey,
        revision: u64,
        schema: u32,
        value: &T,
        nonce: Nonce,
    ) -> Result<(Token, u64), SealError> {
        let at = self.seal_point()?;

        // 1. Header, room for the nonce, then the payload serialized after them, with the
        //    same checks as a signed entry's.
        let mut header = Vec::with_capacity(token::overhead_for(EntryKind::Encrypted, 32));
        let id = &at.ring_key.id;
        token::write_header(
            &mut header,
            EntryKind::Encrypted,
            id,
            at.step,
            &key,
            revision,
            schema,
        );
        let nonce_start = header.len();
        header.extend_from_slice(&[0; NONCE_LEN]);
        let payload_start = header.len();
        let mut buf = PlainBuf::with_capacity(payload_start.saturating_add(256));
        buf.extend_from_slice(&header);
        write_payload(&mut buf, value, self.inner.limits.max_depth())?;
        check_reserved(buf.as_slice().get(payload_start..).unwrap_or_default())?;

        // 2. Size (of the encrypted token), before any key or random work.
        let len = token::encoded_len(buf.len().saturating_add(AEAD_TAG_LEN));
        self.check_len(len)?;

        // 3. The entry key for (key id, step), a fresh nonce, then the payload encrypted in
        //    place with the header fields and the bindings as associated data.
        let step_key = self.seal_key(&at)?;
        let nonce = nonce.draw()?;
        let bytes = buf.as_mut_slice();
        let (head, payload) = bytes.split_at_mut(payload_start);
        if let Some(slot) = head.get_mut(nonce_start..) {
            slot.copy_from_slice(&nonce);
        }
        let tag = step_key
            .entry
            .encrypt(
                &scope.binding(key.as_bytes(), revision, schema),
                &nonce,
                payload,
            )
            // Only over 2³⁸ bytes of payload, far past any token cap.
            .map_err(|()| SealError::TooLarge {
                len,
                max: self.inner.limits.max_token_bytes(),
            })?;

        // 4. Tag last, then base64url; `buf` now holds only ciphertext, and is wiped anyway.
        let token = Token::from_string(token::encode_with_tag(buf.as_slice(), &tag));
        Ok((token, at.step))
    }
}

/// Serializes `value` as compact JSON into `w`, its depth counted as it is written (the same
/// count as `depth_within`, without a second pass), refusing non-finite floats (which
/// serde_json would write as `null`) on the way. The same checks for both kinds of entry.
fn write_payload<W: io::Write, T: Serialize + ?Sized>(
    w: &mut W,
    value: &T,
    max_depth: usize,
) -> Result<(), SealError> {
    let too_deep = Cell::new(false);
    let non_finite = Cell::new(false);
    let formatter = DepthLimit {
        depth: 0,
        max: max_depth,
        exceeded: &too_deep,
    };
    let checked = Finite {
        value,
        found: &non_finite,
    };
    let written = checked.serialize(&mut serde_json::Serializer::with_formatter(w, formatter));
    // Limits, before any key work.
    if non_finite.get() {
        return Err(SealError::NonFiniteFloat);
    }
    if too_deep.get() {
        return Err(SealError::TooDeep { max: max_depth });
    }
    written.map_err(SealError::Serialize)
}

/// serde_json's reserved first key, also in raw fragments, however they space or escape it
/// (`open` refuses it too).
fn check_reserved(payload: &[u8]) -> Result<(), SealError> {
    if has_reserved_key(payload) {
        return Err(SealError::Serialize(serde::ser::Error::custom(
            "an object's first key starts with \"$serde_json::private::\", which serde_json \
             reads back as something else",
        )));
    }
    Ok(())
}

/// serde_json's compact output (every method not overridden is the compact default, so the
/// bytes are exactly `serde_json::to_writer`'s), refusing to nest deeper than `max`: arrays
/// and objects count one level each, as in `depth_within`; raw fragments are scanned.
struct DepthLimit<'a> {
    depth: usize,
    max: usize,
    exceeded: &'a Cell<bool>,
}

impl DepthLimit<'_> {
    fn enter(&mut self) -> io::Result<()> {
        self.depth = self.depth.saturating_add(1);
        if self.depth > self.max {
            self.exceeded.set(true);
            return Err(io::Error::other("state-recovery: too deep"));
        }
        Ok(())
    }
}

impl Formatter for DepthLimit<'_> {
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.enter()?;
        w.write_all(b"[")
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth = self.depth.saturating_sub(1);
        w.write_all(b"]")
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.enter()?;
        w.write_all(b"{")
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth = self.depth.saturating_sub(1);
        w.write_all(b"}")
    }

    fn write_raw_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if !depth_within(fragment.as_bytes(), self.max.saturating_sub(self.depth)) {
            self.exceeded.set(true);
            return Err(io::Error::other("state-recovery: too deep"));
        }
        w.write_all(fragment.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;
    use serde_json::value::RawValue;

    use super::*;
    use crate::payload::depth_within;

    fn compact(v: &impl Serialize, max: usize) -> Result<Vec<u8>, bool> {
        let exceeded = Cell::new(false);
        let mut buf = Vec::new();
        let f = DepthLimit {
            depth: 0,
            max,
            exceeded: &exceeded,
        };
        let r = v.serialize(&mut serde_json::Serializer::with_formatter(&mut buf, f));
        match (exceeded.get(), r) {
            (true, _) => Err(true),
            (false, Ok(())) => Ok(buf),
            (false, Err(_)) => Err(false),
        }
    }

    #[test]
    fn counts_depth_like_the_scan_and_writes_compact_json() {
        let values = [
            serde_json::json!(1),
            serde_json::json!([]),
            serde_json::json!({"a": [1, {"b": "[[[{{"}], "c": {}}),
            serde_json::json!([[[[[]]]], [[]], {"x": [[[null]]]}]),
        ];
        for v in &values {
            let expected = serde_json::to_vec(v).unwrap();
            for max in 0..7 {
                match compact(v, max) {
                    Ok(bytes) => {
                        assert_eq!(bytes, expected);
                        assert!(depth_within(&expected, max));
                    }
                    Err(too_deep) => {
                        assert!(too_deep);
                        assert!(!depth_within(&expected, max), "{v} at {max}");
                    }
                }
            }
        }
    }

    #[test]
    fn raw_fragments_count_from_where_they_sit() {
        #[derive(Serialize)]
        struct Wrap {
            inner: Vec<Box<RawValue>>,
        }
        let raw = RawValue::from_string("[[1]]".into()).unwrap();
        let v = Wrap { inner: vec![raw] };
        // {"inner":[ [[1]] ]}: 4 levels.
        assert_eq!(compact(&v, 4).unwrap(), br#"{"inner":[[[1]]]}"#);
        assert_eq!(compact(&v, 3), Err(true));
    }
}
