//! Inbound: token -> size -> base64url -> version -> key id -> window -> MAC (signed) or
//! AEAD (encrypted) -> location -> JSON depth -> reserved keys -> serde. Mirrors `seal.rs`
//! step for step; nothing is deserialized (or, for an encrypted entry, decrypted) before the
//! tag verifies.

use std::fmt;

use serde::de::DeserializeOwned;

use crate::aead::PlainBuf;
use crate::error::{Reason, Rejection};
use crate::key::StateKey;
use crate::mac::EntryFields;
use crate::otp::{StepKey, Window};
use crate::payload::{depth_within, has_reserved_key};
use crate::recovery::{Recovery, Scope};
use crate::token::{self, Body, EntryKind, Parts};

/// An entry that verified, with its value.
///
/// Its `Debug` shows the entry's fields but not the value: restored state is the user's data
/// (what they typed, what is in their cart; for an encrypted entry, data the client could
/// not read), and `Debug` output ends up in logs. Print `opened.value` explicitly where that
/// is wanted.
#[derive(Clone, PartialEq)]
pub struct Opened<T> {
    /// The state key it was sealed for.
    pub key: StateKey,
    /// Its revision: keep the highest, refuse rollbacks if it matters.
    pub revision: u64,
    /// The app's schema version it was sealed with.
    pub schema: u32,
    /// The time step it was sealed in.
    pub step: u64,
    /// Whether it was sealed under the ring's first (sealing) key; `false` for an entry
    /// sealed under a key that has since been rotated to a later position.
    pub primary: bool,
    /// Whether it was signed (its payload readable by the client) or encrypted.
    pub kind: EntryKind,
    /// The value.
    pub value: T,
}

impl<T> fmt::Debug for Opened<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("key", &self.key)
            .field("revision", &self.revision)
            .field("schema", &self.schema)
            .field("step", &self.step)
            .field("primary", &self.primary)
            .field("kind", &self.kind)
            .field("value", &format_args!("<{}>", std::any::type_name::<T>()))
            .finish()
    }
}

impl Recovery {
    /// Opens one token for `scope`, whatever its state key.
    ///
    /// Signed and encrypted entries both open, whatever kind this recovery seals
    /// ([`Opened::kind`] says which it was).
    ///
    /// # Errors
    /// A [`Rejection`] whose [`Reason`] says why, checked in this order: `too-large`,
    /// `malformed`, `unsupported-version`, `unknown-key`, `expired`/`not-yet-valid`,
    /// `bad-signature` (the HMAC tag, or the AEAD tag of an encrypted entry), then `too-large`
    /// (depth), `invalid-payload` (an object whose first key is serde_json's reserved
    /// `$serde_json::private::...`, however spelled), `malformed` or `invalid-payload`
    /// (JSON).
    pub fn open<T: DeserializeOwned>(
        &self,
        scope: &Scope<'_>,
        token: &str,
    ) -> Result<Opened<T>, Rejection> {
        self.open_bytes(scope, token.as_bytes(), None, |p| parse_json(p))
            .map_err(|f| Rejection::new(f.reason))
    }

    /// Opens one token that must have been sealed for `expected`; an authentic token for
    /// another key is `wrong-location`.
    ///
    /// # Errors
    /// As [`open`](Self::open), plus `wrong-location` after the MAC check.
    pub fn open_at<T: DeserializeOwned>(
        &self,
        scope: &Scope<'_>,
        expected: StateKey,
        token: &str,
    ) -> Result<Opened<T>, Rejection> {
        self.open_bytes(scope, token.as_bytes(), Some(&expected), |p| parse_json(p))
            .map_err(|f| Rejection::new(f.reason))
    }

    /// The shared inbound path; `finish` turns the verified payload into a value.
    pub(crate) fn open_bytes<T>(
        &self,
        scope: &Scope<'_>,
        text: &[u8],
        expected: Option<&StateKey>,
        finish: impl FnOnce(&[u8]) -> Result<T, Reason>,
    ) -> Result<Opened<T>, Failure> {
        self.open_bytes_in(scope, text, expected, &mut Batch::one(), finish)
    }

    /// [`open_bytes`](Self::open_bytes) as one of a [`Batch`].
    pub(crate) fn open_bytes_in<T>(
        &self,
        scope: &Scope<'_>,
        text: &[u8],
        expected: Option<&StateKey>,
        batch: &mut Batch,
        finish: impl FnOnce(&[u8]) -> Result<T, Reason>,
    ) -> Result<Opened<T>, Failure> {
        let inner = &*self.inner;
        let limits = &inner.limits;

        // 1-3. Size, base64url shape, version and layout.
        let mut scratch = std::mem::take(&mut batch.scratch);
        let decoded = token::decode_into(text, limits.max_token_bytes(), &mut scratch);
        let result = decoded
            .and_then(|()| token::parse(&scratch))
            .map_err(Failure::unkeyed)
            .and_then(|parts| self.open_parts(scope, &parts, expected, batch, finish));
        batch.scratch = scratch;
        result
    }

    /// Steps 4 to 8 on a decoded token.
    fn open_parts<T>(
        &self,
        scope: &Scope<'_>,
        parts: &Parts<'_>,
        expected: Option<&StateKey>,
        batch: &mut Batch,
        finish: impl FnOnce(&[u8]) -> Result<T, Reason>,
    ) -> Result<Opened<T>, Failure> {
        let key = StateKey::from_bytes(*parts.state_key);
        let claimed = |reason| Failure {
            reason,
            claimed: Some(key),
            claimed_revision: Some(parts.revision),
        };
        let result = self
            .verify(scope, parts, expected, batch)
            .and_then(|primary| {
                // The verified payload: as carried, or as decrypted into the batch's buffer.
                let payload = match parts.body {
                    Body::Signed { payload, .. } => payload,
                    Body::Encrypted { .. } => batch.plain.as_slice(),
                };
                let value = self.finish_payload(payload, finish)?;
                Ok((primary, value))
            });
        // Plaintext does not outlive the open (the value is the caller's).
        if parts.kind().is_encrypted() {
            batch.plain.wipe();
        }
        let (primary, value) = result.map_err(claimed)?;
        Ok(Opened {
            key,
            revision: parts.revision,
            schema: parts.schema,
            step: parts.step,
            primary,
            kind: parts.kind(),
            value,
        })
    }

    /// Step 8. JSON: depth first, then serde_json's reserved keys (an object whose first key
    /// unescapes to `$serde_json::private::...` would be read back as another value), then
    /// serde.
    fn finish_payload<T>(
        &self,
        payload: &[u8],
        finish: impl FnOnce(&[u8]) -> Result<T, Reason>,
    ) -> Result<T, Reason> {
        if !depth_within(payload, self.inner.limits.max_depth()) {
            Err(Reason::TooLarge)
        } else if has_reserved_key(payload) {
            Err(Reason::InvalidPayload)
        } else {
            finish(payload)
        }
    }

    /// Steps 4 to 7: key id, window, tag, location. `Ok(true)` when the entry was sealed
    /// under the ring's first (sealing) key. An encrypted entry's plaintext is left in
    /// `batch.plain` (only when its tag verified).
    fn verify(
        &self,
        scope: &Scope<'_>,
        parts: &Parts<'_>,
        expected: Option<&StateKey>,
        batch: &mut Batch,
    ) -> Result<bool, Reason> {
        let inner = &*self.inner;

        // 4. Key id.
        let (index, _) = inner.ring.find(parts.key_id).ok_or(Reason::UnknownKey)?;

        // 5. Time window, before deriving (or caching) any step key. A clock before 1970 is
        //    behind every entry (`not-yet-valid`); one past the covered range is ahead of every
        //    entry's window (`expired`).
        let now = *batch.now.get_or_insert_with(|| inner.clock.checked_now());
        let (now, current) = match inner.otp.covered(now) {
            Ok(covered) => covered,
            Err(outside) => return Err(refusal(outside).unwrap_or(Reason::NotYetValid)),
        };
        if let Some(reason) = refusal(inner.otp.check_step(parts.step, current)) {
            return Err(reason);
        }

        // 6. One HMAC over the entry, compared in constant time; or one AEAD decryption,
        //    whose tag is checked (in constant time) before any byte is decrypted.
        let step_key = match batch.step_key.take() {
            Some((i, step, k)) if i == index && step == parts.step => k,
            _ => inner
                .step_key(index, parts.step, now)
                .ok_or(Reason::UnknownKey)?,
        };
        let binding = scope.binding(parts.state_key, parts.revision, parts.schema);
        let authentic = match parts.body {
            Body::Signed { payload, tag } => {
                let fields = EntryFields { binding, payload };
                if batch.remember {
                    let authentic = fields.verify(step_key.mac.clone(), tag);
                    batch.step_key = Some((index, parts.step, step_key));
                    authentic
                } else {
                    fields.verify(step_key.mac, tag)
                }
            }
            Body::Encrypted {
                nonce,
                ciphertext,
                tag,
            } => {
                // Empty (and wiped) here: `open_parts` wipes it after every entry.
                if batch.plain.len() != 0 {
                    batch.plain.wipe();
                }
                batch.plain.extend_from_slice(ciphertext);
                let authentic =
                    step_key
                        .entry
                        .decrypt(&binding, nonce, batch.plain.as_mut_slice(), tag);
                if batch.remember {
                    batch.step_key = Some((index, parts.step, step_key));
                }
                authentic
            }
        };
        if !authentic {
            return Err(Reason::BadSignature);
        }

        // 7. Location (authentic, but for another key?).
        if expected.is_some_and(|e| e.as_bytes() != parts.state_key) {
            return Err(Reason::WrongLocation);
        }
        Ok(index == 0)
    }

    /// The payload of a token a connection holds, to re-seal it (`RecoveryContext::refresh`):
    /// its kind, revision, schema and payload, copied into a wiped buffer. The token was
    /// verified when it was restored, or sealed here, so neither the window nor (for a
    /// signed entry) the tag is checked again, as before encrypted entries existed; an
    /// encrypted entry is decrypted, which checks its tag on the way, under `scope`.
    pub(crate) fn held_entry(&self, scope: &Scope<'_>, text: &str) -> Result<HeldEntry, Reason> {
        let inner = &*self.inner;
        let bytes = token::decode(text.as_bytes(), inner.limits.max_token_bytes())?;
        let parts = token::parse(&bytes)?;
        let mut payload = PlainBuf::default();
        match parts.body {
            Body::Signed { payload: p, .. } => payload.extend_from_slice(p),
            Body::Encrypted {
                nonce,
                ciphertext,
                tag,
            } => {
                let (index, _) = inner.ring.find(parts.key_id).ok_or(Reason::UnknownKey)?;
                let now = inner.clock.now();
                let step_key = inner
                    .step_key(index, parts.step, now)
                    .ok_or(Reason::UnknownKey)?;
                let binding = scope.binding(parts.state_key, parts.revision, parts.schema);
                payload.extend_from_slice(ciphertext);
                if !step_key
                    .entry
                    .decrypt(&binding, nonce, payload.as_mut_slice(), tag)
                {
                    return Err(Reason::BadSignature);
                }
            }
        }
        Ok(HeldEntry {
            kind: parts.kind(),
            revision: parts.revision,
            schema: parts.schema,
            payload,
        })
    }
}

/// A held entry's fields and payload, for re-sealing. The payload is wiped on drop.
pub(crate) struct HeldEntry {
    pub(crate) kind: EntryKind,
    pub(crate) revision: u64,
    pub(crate) schema: u32,
    pub(crate) payload: PlainBuf,
}

/// The rejection for an entry outside the window, if it is outside.
const fn refusal(window: Window) -> Option<Reason> {
    match window {
        Window::Inside => None,
        Window::Expired => Some(Reason::Expired),
        Window::NotYetValid => Some(Reason::NotYetValid),
    }
}

/// What opening many tokens at once (a bundle) shares between them: one decode buffer, one
/// plaintext buffer for encrypted entries (wiped after each entry, and on drop), one
/// reading of the clock (every entry is judged at the same instant), and the step key of the
/// last (ring index, step) seen, so a bundle of entries from one step takes one step-key cache
/// look-up instead of one per entry.
#[derive(Default)]
pub(crate) struct Batch {
    scratch: Vec<u8>,
    plain: PlainBuf,
    /// The clock, read once (`Some(None)`: a time before 1970).
    now: Option<Option<u64>>,
    remember: bool,
    step_key: Option<(usize, u64, StepKey)>,
}

impl Batch {
    /// For a single token: nothing worth keeping.
    pub(crate) fn one() -> Self {
        Self::default()
    }

    /// For many tokens.
    pub(crate) fn many() -> Self {
        Self {
            remember: true,
            ..Self::default()
        }
    }
}

/// A failed open, with the state key the token claimed when it got far enough to have one
/// (unverified unless the reason comes after the MAC check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) reason: Reason,
    pub(crate) claimed: Option<StateKey>,
    pub(crate) claimed_revision: Option<u64>,
}

impl Failure {
    fn unkeyed(reason: Reason) -> Self {
        Self {
            reason,
            claimed: None,
            claimed_revision: None,
        }
    }
}

/// serde_json with errors sorted into `malformed` (not JSON) and `invalid-payload` (JSON of
/// another shape than the type asked for).
///
/// The payload is checked as UTF-8 once, up front (std's check runs a word at a time), and
/// parsed with `from_str`, which then skips serde_json's own per-string UTF-8 checks. Not
/// UTF-8 is `malformed`, as serde_json would have said.
pub(crate) fn parse_json<T: DeserializeOwned>(payload: &[u8]) -> Result<T, Reason> {
    let text = std::str::from_utf8(payload).map_err(|_| Reason::Malformed)?;
    serde_json::from_str(text).map_err(|e| json_reason(&e))
}

pub(crate) fn json_reason(e: &serde_json::Error) -> Reason {
    match e.classify() {
        serde_json::error::Category::Data => Reason::InvalidPayload,
        _ => Reason::Malformed,
    }
}
