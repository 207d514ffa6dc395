//! Outbound: value -> serde_json -> PAE -> HMAC with the step key -> base64url token.
//! Mirrors `open.rs` step for step.

use std::cell::Cell;
use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;

use crate::error::SealError;
use crate::finite::Finite;
use crate::key::StateKey;
use crate::mac::{EntryFields, TAG_LEN};
use crate::payload::{depth_within, has_reserved_key};
use crate::recovery::{Recovery, Scope};
use crate::token::{self, Token};

impl Recovery {
    /// Seals `value` as the entry for `key` at `revision`, with the app's `schema` version for
    /// this state, bound to `scope` (salt and optional subject), under the ring's first key and
    /// the current time step.
    ///
    /// # Errors
    /// [`SealError`] if the value does not serialize, holds a non-finite float, nests deeper
    /// than the depth limit, or would make a token over the size limit;
    /// [`SealError::ClockOutOfRange`] if the clock reads a time before 1970 or past what the
    /// step arithmetic covers ([`OtpSettings::covers`](crate::OtpSettings::covers)).
    pub fn seal<T: Serialize + ?Sized>(
        &self,
        scope: &Scope<'_>,
        key: StateKey,
        revision: u64,
        schema: u32,
        value: &T,
    ) -> Result<Token, SealError> {
        let inner = &*self.inner;
        // A clock before 1970, or past what the step arithmetic covers, seals nothing (rather
        // than sealing at step 0, or in a saturated window).
        let (now, step) = inner
            .otp
            .covered(inner.clock.checked_now())
            .map_err(|_| SealError::ClockOutOfRange)?;
        let (index, ring_key) = inner.ring.sealing();

        // 1. Header, then the payload serialized straight after it (no copy), its depth
        //    counted as it is written (the same count as `depth_within`, without a second pass).
        let limits = &inner.limits;
        let mut buf = Vec::with_capacity(256);
        token::write_header(&mut buf, &ring_key.id, step, &key, revision, schema);
        let payload_start = buf.len();
        //    Non-finite floats, which serde_json would write as `null`, are refused on the way.
        let too_deep = Cell::new(false);
        let non_finite = Cell::new(false);
        let formatter = DepthLimit {
            depth: 0,
            max: limits.max_depth(),
            exceeded: &too_deep,
        };
        let checked = Finite {
            value,
            found: &non_finite,
        };
        let written = checked.serialize(&mut serde_json::Serializer::with_formatter(
            &mut buf, formatter,
        ));

        // 2. Limits, before any MAC work.
        if non_finite.get() {
            return Err(SealError::NonFiniteFloat);
        }
        if too_deep.get() {
            return Err(SealError::TooDeep {
                max: limits.max_depth(),
            });
        }
        written.map_err(SealError::Serialize)?;
        let payload = buf.get(payload_start..).unwrap_or_default();
        // Also in raw fragments, however they space or escape it (`open` refuses it too).
        if has_reserved_key(payload) {
            return Err(SealError::Serialize(serde::ser::Error::custom(
                "an object's first key starts with \"$serde_json::private::\", which serde_json \
                 reads back as something else",
            )));
        }
        let len = token::encoded_len(buf.len().saturating_add(TAG_LEN));
        if len > limits.max_token_bytes() {
            return Err(SealError::TooLarge {
                len,
                max: limits.max_token_bytes(),
            });
        }

        // 3. The step key for (key id, step), then one HMAC over the entry's fields.
        //    (`get` is `None` only for an index outside the ring, never the sealing one.)
        let step_key = inner
            .cache
            .get(&inner.ring, index, step, &inner.namespace, &inner.otp, now)
            .ok_or(SealError::ClockOutOfRange)?;
        let fields = EntryFields {
            salt: scope.salt.as_bytes(),
            subject: scope.subject.map(str::as_bytes),
            state_key: key.as_bytes(),
            revision,
            schema,
            payload,
        };
        let tag = fields.tag(step_key.mac);

        // 4. Tag last, then base64url (the tag is not copied into `buf`: no reallocation).
        Ok(Token::from_string(token::encode_with_tag(&buf, &tag)))
    }
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
