//! Inbound: token -> size -> base64url -> version -> key id -> window -> MAC -> location ->
//! JSON depth -> reserved keys -> serde. Mirrors `seal.rs` step for step; nothing is deserialized before the
//! MAC verifies.

use std::fmt;

use serde::de::DeserializeOwned;

use crate::error::{Reason, Rejection};
use crate::key::StateKey;
use crate::mac::EntryFields;
use crate::otp::{StepKey, Window};
use crate::payload::{depth_within, has_reserved_key};
use crate::recovery::{Recovery, Scope};
use crate::token::{self, Parts};

/// An entry that verified, with its value.
///
/// Its `Debug` shows the entry's fields but not the value: restored state is the user's data
/// (what they typed, what is in their cart), and `Debug` output ends up in logs. Print
/// `opened.value` explicitly where that is wanted.
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
            .field("value", &format_args!("<{}>", std::any::type_name::<T>()))
            .finish()
    }
}

impl Recovery {
    /// Opens one token for `scope`, whatever its state key.
    ///
    /// # Errors
    /// A [`Rejection`] whose [`Reason`] says why, checked in this order: `too-large`,
    /// `malformed`, `unsupported-version`, `unknown-key`, `expired`/`not-yet-valid`,
    /// `bad-signature`, then `too-large` (depth), `invalid-payload` (an object whose first key
    /// is serde_json's reserved `$serde_json::private::...`, however spelled), `malformed` or
    /// `invalid-payload` (JSON).
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
        let limits = &self.inner.limits;
        let key = StateKey::from_bytes(*parts.state_key);
        let claimed = |reason| Failure {
            reason,
            claimed: Some(key),
            claimed_revision: Some(parts.revision),
        };
        let primary = self
            .verify(scope, parts, expected, batch)
            .map_err(claimed)?;

        // 8. JSON: depth first, then serde_json's reserved keys (an object whose first key
        //    unescapes to `$serde_json::private::...` would be read back as another value),
        //    then serde.
        let parsed = if !depth_within(parts.payload, limits.max_depth()) {
            Err(Reason::TooLarge)
        } else if has_reserved_key(parts.payload) {
            Err(Reason::InvalidPayload)
        } else {
            finish(parts.payload)
        };
        let value = parsed.map_err(claimed)?;
        Ok(Opened {
            key,
            revision: parts.revision,
            schema: parts.schema,
            step: parts.step,
            primary,
            value,
        })
    }

    /// Steps 4 to 7: key id, window, MAC, location. `Ok(true)` when the entry was sealed
    /// under the ring's first (sealing) key.
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

        // 6. One HMAC over the entry, compared in constant time.
        let StepKey { mac } = match batch.step_key.take() {
            Some((i, step, k)) if i == index && step == parts.step => k,
            _ => inner
                .cache
                .get(
                    &inner.ring,
                    index,
                    parts.step,
                    &inner.namespace,
                    &inner.otp,
                    now,
                )
                .ok_or(Reason::UnknownKey)?,
        };
        let fields = EntryFields {
            salt: scope.salt.as_bytes(),
            subject: scope.subject.map(str::as_bytes),
            state_key: parts.state_key,
            revision: parts.revision,
            schema: parts.schema,
            payload: parts.payload,
        };
        let authentic = if batch.remember {
            let authentic = fields.verify(mac.clone(), parts.tag);
            batch.step_key = Some((index, parts.step, StepKey { mac }));
            authentic
        } else {
            fields.verify(mac, parts.tag)
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
/// reading of the clock (every entry is judged at the same instant), and the step key of the
/// last (ring index, step) seen, so a bundle of entries from one step takes one step-key cache
/// look-up instead of one per entry.
#[derive(Default)]
pub(crate) struct Batch {
    scratch: Vec<u8>,
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
