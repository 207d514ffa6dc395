//! Outbound: value -> serde_json -> PAE -> HMAC with the step key -> base64url token.
//! Mirrors `open.rs` step for step.

use serde::Serialize;

use crate::error::SealError;
use crate::key::StateKey;
use crate::mac::{EntryFields, TAG_LEN};
use crate::payload::depth_within;
use crate::recovery::{Recovery, Scope};
use crate::token::{self, Token, FORMAT_VERSION};

impl Recovery {
    /// Seals `value` as the entry for `key` at `revision`, with the app's `schema` version for
    /// this state, bound to `scope` (salt and optional subject), under the ring's first key and
    /// the current time step.
    ///
    /// # Errors
    /// [`SealError`] if the value does not serialize, nests deeper than the depth limit, or
    /// would make a token over the size limit.
    pub fn seal<T: Serialize + ?Sized>(
        &self,
        scope: &Scope<'_>,
        key: StateKey,
        revision: u64,
        schema: u32,
        value: &T,
    ) -> Result<Token, SealError> {
        let inner = &*self.inner;
        let now = inner.clock.now();
        let step = inner.otp.step_at(now);
        let (index, ring_key) = inner.ring.sealing();

        // 1. Header, then the payload serialized straight after it (no copy).
        let mut buf = Vec::with_capacity(256);
        token::write_header(&mut buf, &ring_key.id, step, &key, revision, schema);
        let payload_start = buf.len();
        serde_json::to_writer(&mut buf, value).map_err(SealError::Serialize)?;

        // 2. Limits, before any MAC work.
        let limits = &inner.limits;
        let payload = buf.get(payload_start..).unwrap_or_default();
        if !depth_within(payload, limits.max_depth()) {
            return Err(SealError::TooDeep {
                max: limits.max_depth(),
            });
        }
        let len = token::encoded_len(buf.len().saturating_add(TAG_LEN));
        if len > limits.max_token_bytes() {
            return Err(SealError::TooLarge {
                len,
                max: limits.max_token_bytes(),
            });
        }

        // 3. The step key for (key id, step), then one HMAC over the entry's fields.
        let step_key = inner
            .cache
            .get(&inner.ring, index, step, &inner.namespace, &inner.otp, now)
            .ok_or(SealError::ClockOutOfRange)?;
        let fields = EntryFields {
            version: FORMAT_VERSION,
            key_id: ring_key.id.as_str().as_bytes(),
            step,
            code: step_key.code.as_ref(),
            salt: scope.salt.as_bytes(),
            subject: scope.subject.map(str::as_bytes),
            state_key: key.as_bytes(),
            revision,
            schema,
            payload,
        };
        let tag = fields.tag(step_key.mac, &inner.namespace);

        // 4. Tag last, then base64url.
        buf.extend_from_slice(&tag);
        Ok(Token::from_string(token::encode(&buf)))
    }
}
