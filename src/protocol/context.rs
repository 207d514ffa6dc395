//! The per-connection context: whose entries these are, the highest revision seen per key,
//! and what the client holds (for refreshing entries and keeping the bundle within its cap).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use serde::Serialize;
use serde_json::value::RawValue;

use super::events::{
    event_seq, Accepted, AppliedPayload, EventError, EventId, Incoming, APPLIED_SCHEMA, MAX_SEQ,
    MAX_SEQ_GAP,
};
use super::message::{Batch, SaltMessage, StateUpdate};
use crate::error::{Reason, SealError};
use crate::guard::GuardLink;
use crate::key::StateKey;
use crate::recovery::{Recovery, Scope};
use crate::secret::Salt;
use crate::token::{EntryKind, Token};

/// The highest revision a context hands out: JavaScript's `Number.MAX_SAFE_INTEGER`, the
/// largest the JS client can compare exactly. Claimed and restored revisions above it are
/// treated as it (and an equal revision replaces the client's entry).
pub const MAX_REVISION: u64 = (1 << 53) - 1;

/// The bytes of a reconnect message around its tokens: `{"type":"recover","salt":"<22>",
/// "entries":[`, `],"input":{}}`, rounded up. Each token adds its length and 3 (quotes and a
/// comma).
pub(crate) const BUNDLE_OVERHEAD: usize = 80;
const PER_ENTRY: usize = 3;
/// The label of [`RecoveryContext::event_id`] (the store-id key's other labels are the
/// guard's `subject` and `scope`).
const EVENT_ID_LABEL: &[u8] = b"event";

/// One entry the client holds, as far as this connection knows.
struct Held {
    /// The token, when this connection may re-seal it (restored entries claimed by a slot,
    /// and everything it sealed itself).
    token: Option<Token>,
    /// Its length (for the bundle budget).
    len: usize,
    /// The time step it was sealed in.
    step: u64,
    /// Whether it was sealed under the ring's first key.
    primary: bool,
}

impl Held {
    /// A token this connection just sealed (in the current step, under the first key); its
    /// copy is kept only when the connection refreshes.
    fn sealed(token: &Token, step: u64, refresh: bool) -> Self {
        Self {
            len: token.as_str().len(),
            token: refresh.then(|| token.clone()),
            step,
            primary: true,
        }
    }
}

#[derive(Default)]
struct Table {
    revisions: BTreeMap<StateKey, u64>,
    held: BTreeMap<StateKey, Held>,
    /// What the application did with restored entries (true: used), for honest counts.
    usage: BTreeMap<StateKey, bool>,
    /// The last event sequence applied: restored from the applied-events entry, then raised
    /// by every new event (0: none).
    applied: u64,
}

/// How much of the client's reconnect message the entries this connection knows of take, and
/// the cap. Every seal keeps `bytes <= max_bytes` and `entries <= max_entries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Bytes of the reconnect message the held entries make (with its fixed overhead).
    pub bytes: usize,
    /// The bundle cap ([`Limits::max_bundle_bytes`](crate::Limits::max_bundle_bytes)).
    pub max_bytes: usize,
    /// Entries held.
    pub entries: usize,
    /// The entry cap ([`Limits::max_entries`](crate::Limits::max_entries)).
    pub max_entries: usize,
}

/// One connection's (or one request's) scope for sealing: the client's salt, the
/// authenticated subject, the [`Recovery`], the highest revision seen per state key, and the
/// entries the client holds.
///
/// Methods take `&self` (the tables are behind a mutex), so it can be shared with `Arc`
/// between the tasks of one connection.
pub struct RecoveryContext {
    recovery: Recovery,
    /// The client's salt; an issued one is drawn on first use (a seal, [`salt`](Self::salt),
    /// [`salt_message`](Self::salt_message)), so a request that seals nothing draws none.
    salt: OnceLock<Salt>,
    salt_issued: bool,
    subject: Option<String>,
    subject_required: bool,
    refresh: bool,
    /// Where seals queue their high-water marks, when the endpoint has a guard.
    guard: Option<GuardLink>,
    /// The guard's store was unavailable and the guard fails closed: nothing is sealed.
    guard_blocked: bool,
    /// Numbered client messages are deduplicated ([`accept_event`](Self::accept_event)).
    events: bool,
    table: Mutex<Table>,
}

impl fmt::Debug for RecoveryContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The salt is redacted by its own Debug; the subject is the app's user id.
        f.debug_struct("RecoveryContext")
            .field("salt", &self.salt.get())
            .field("salt_issued", &self.salt_issued)
            .field("subject", &self.subject)
            .field("subject_required", &self.subject_required)
            .field("refresh", &self.refresh)
            .field("guarded", &self.guard.is_some())
            .field("guard_blocked", &self.guard_blocked)
            .field("events", &self.events)
            .field("applied", &self.applied_seq())
            .field("budget", &self.budget())
            .finish_non_exhaustive()
    }
}

impl RecoveryContext {
    /// A context for a client that handed back `salt` (for framework authors:
    /// [`Endpoint::recover`](super::Endpoint::recover) builds contexts itself).
    #[must_use]
    pub fn new(recovery: Recovery, salt: Salt, subject: Option<String>) -> Self {
        Self::with_salt(recovery, OnceLock::from(salt), false, subject)
    }

    fn with_salt(
        recovery: Recovery,
        salt: OnceLock<Salt>,
        salt_issued: bool,
        subject: Option<String>,
    ) -> Self {
        Self {
            recovery,
            salt,
            salt_issued,
            subject,
            subject_required: false,
            refresh: true,
            guard: None,
            guard_blocked: false,
            events: false,
            table: Mutex::new(Table::default()),
        }
    }

    /// A context with a fresh salt, which the client must be sent
    /// ([`salt_issued`](Self::salt_issued) is true). The salt is drawn from the OS CSPRNG
    /// when it is first needed (see [`salt_drawn`](Self::salt_drawn)).
    #[must_use]
    pub fn fresh(recovery: Recovery, subject: Option<String>) -> Self {
        Self::with_salt(recovery, OnceLock::new(), true, subject)
    }

    /// Refuses to seal without a subject: with no subject, [`seal`](Self::seal) (and every
    /// [`Slot::seal`](crate::Slot::seal) through this context) fails with
    /// [`SealError::NoSubject`] and [`refresh`](Self::refresh) re-seals nothing, instead of
    /// binding state to "anonymous". Contexts made by an endpoint with
    /// [`Endpoint::require_subject`](super::Endpoint::require_subject) have it set.
    #[must_use]
    pub fn require_subject(mut self) -> Self {
        self.subject_required = true;
        self
    }

    /// Never re-seals anything ([`refresh`](Self::refresh) returns nothing) and keeps no
    /// token copies for it. Contexts made by an endpoint with
    /// [`Endpoint::without_refresh`](super::Endpoint::without_refresh) have it set, so the
    /// session's periodic refresh is off too.
    #[must_use]
    pub fn without_refresh(mut self) -> Self {
        self.refresh = false;
        self
    }

    /// Tracks events: [`accept_event`](Self::accept_event) tells a new event from one already
    /// applied and seals the applied-events entry, and the `recovered` message of a
    /// [`Recovered`](super::Recovered) with this context announces `applied`. Contexts made by
    /// an endpoint with [`Endpoint::with_events`](super::Endpoint::with_events) have it set,
    /// with the last applied sequence restored from the client's entry; one built here starts
    /// with nothing applied.
    #[must_use]
    pub fn with_events(mut self) -> Self {
        self.events = true;
        self
    }

    /// Whether this context tracks events ([`with_events`](Self::with_events)).
    #[must_use]
    pub const fn events_enabled(&self) -> bool {
        self.events
    }

    /// A context for a salt generated by the caller, which the client must be sent.
    /// `salt`: `None` draws one when it is first needed.
    pub(crate) fn issued(recovery: Recovery, salt: Option<Salt>, subject: Option<String>) -> Self {
        let salt = salt.map_or_else(OnceLock::new, OnceLock::from);
        Self::with_salt(recovery, salt, true, subject)
    }

    /// Queues a high-water mark through `link` for every seal and refresh.
    pub(crate) fn with_guard(mut self, link: GuardLink) -> Self {
        self.guard = Some(link);
        self
    }

    /// Seals nothing: the guard's store was unavailable and the guard fails closed.
    pub(crate) fn guard_blocked(mut self) -> Self {
        self.guard_blocked = true;
        self
    }

    /// Whether seals queue high-water marks for a guard.
    #[must_use]
    pub fn is_guarded(&self) -> bool {
        self.guard.is_some()
    }

    /// Whether this context refuses to seal because the guard's store was unavailable when
    /// the connection started and the guard fails closed
    /// ([`SealError::GuardUnavailable`]).
    #[must_use]
    pub const fn is_guard_blocked(&self) -> bool {
        self.guard_blocked
    }

    /// Whether this context refuses to seal without a subject
    /// ([`require_subject`](Self::require_subject)).
    #[must_use]
    pub const fn subject_required(&self) -> bool {
        self.subject_required
    }

    /// Whether this context can seal at all (not refused for a missing subject nor blocked by
    /// the guard); a context that cannot does not announce `applied`, so the client does not
    /// number its messages on it.
    #[must_use]
    pub fn can_seal(&self) -> bool {
        self.check_sealable().is_ok()
    }

    /// [`SealError::NoSubject`] when a subject is required and missing,
    /// [`SealError::GuardUnavailable`] when the guard blocks sealing.
    fn check_sealable(&self) -> Result<(), SealError> {
        if self.subject_required && self.subject.is_none() {
            return Err(SealError::NoSubject);
        }
        if self.guard_blocked {
            return Err(SealError::GuardUnavailable);
        }
        Ok(())
    }

    /// Seals `value` as the entry for `key` at revision `rev`, with the app's `schema`
    /// version, for this client's salt and subject, as the kind the recovery seals
    /// ([`Recovery::entry_kind`]), and records `rev` as seen and the entry as held by the
    /// client.
    ///
    /// # Errors
    /// [`SealError`] if the value does not serialize or is over a limit, and
    /// [`SealError::OverBudget`] / [`SealError::TooManyEntries`] if the client's reconnect
    /// message would then be over the bundle cap or the entry cap: the update is not handed
    /// out, and the client keeps its previous entry for `key`. Trim the state and seal again.
    /// [`SealError::NoSubject`] if the context [requires a subject](Self::require_subject)
    /// and has none; [`SealError::GuardUnavailable`] if it was made while the guard's store
    /// was unavailable and the guard fails closed; [`SealError::ReservedKey`] for the key of
    /// the applied-events entry ([`Recovery::applied_key`]).
    ///
    /// With a guard, the revision is also queued as the key's high-water mark, written to the
    /// store behind the seal (never awaited here).
    pub fn seal<T: Serialize + ?Sized>(
        &self,
        key: StateKey,
        rev: u64,
        schema: u32,
        value: &T,
    ) -> Result<StateUpdate, SealError> {
        self.seal_with(self.recovery.entry_kind(), key, rev, schema, value)
    }

    /// [`seal`](Self::seal) as the given kind ([`Recovery::seal_with`]): what
    /// [`Slot::seal`](crate::Slot::seal) calls for a slot declared
    /// [`encrypted`](crate::SlotBuilder::encrypted). The budget counts the token as sealed.
    ///
    /// # Errors
    /// As [`seal`](Self::seal).
    pub fn seal_with<T: Serialize + ?Sized>(
        &self,
        kind: EntryKind,
        key: StateKey,
        rev: u64,
        schema: u32,
        value: &T,
    ) -> Result<StateUpdate, SealError> {
        if key == self.recovery.applied_key() {
            return Err(SealError::ReservedKey);
        }
        self.seal_entry(kind, key, rev, schema, value)
    }

    /// [`seal_with`](Self::seal_with) without the reserved-key check.
    fn seal_entry<T: Serialize + ?Sized>(
        &self,
        kind: EntryKind,
        key: StateKey,
        rev: u64,
        schema: u32,
        value: &T,
    ) -> Result<StateUpdate, SealError> {
        self.check_sealable()?;
        let (token, step) =
            self.recovery
                .seal_stepped(kind, &self.scope(), key, rev, schema, value)?;
        let mut table = self.table();
        Self::check_budget(&table, &self.recovery, key, token.as_str().len())?;
        Self::raise(&mut table, key, rev);
        table
            .held
            .insert(key, Held::sealed(&token, step, self.refresh));
        drop(table);
        if let Some(guard) = &self.guard {
            guard.raise(key, rev);
        }
        Ok(StateUpdate::new(key, rev, token))
    }

    fn check_budget(
        table: &Table,
        recovery: &Recovery,
        key: StateKey,
        len: usize,
    ) -> Result<(), SealError> {
        let limits = recovery.limits();
        let others = table.held.iter().filter(|(k, _)| **k != key);
        let (count, bytes) = others.fold((0usize, BUNDLE_OVERHEAD), |(n, b), (_, h)| {
            (
                n.saturating_add(1),
                b.saturating_add(h.len).saturating_add(PER_ENTRY),
            )
        });
        if count >= limits.max_entries() {
            return Err(SealError::TooManyEntries {
                max: limits.max_entries(),
            });
        }
        let bytes = bytes.saturating_add(len).saturating_add(PER_ENTRY);
        if bytes > limits.max_bundle_bytes() {
            return Err(SealError::OverBudget {
                bytes,
                max: limits.max_bundle_bytes(),
            });
        }
        Ok(())
    }

    /// The bundle budget: what the entries held by the client take of the caps.
    #[must_use]
    pub fn budget(&self) -> Budget {
        let table = self.table();
        let limits = self.recovery.limits();
        let bytes = table.held.values().fold(BUNDLE_OVERHEAD, |b, h| {
            b.saturating_add(h.len).saturating_add(PER_ENTRY)
        });
        Budget {
            bytes,
            max_bytes: limits.max_bundle_bytes(),
            entries: table.held.len(),
            max_entries: limits.max_entries(),
        }
    }

    /// The next revision for `key`: one more than the highest seen (restored, sealed, claimed
    /// by a rejected entry, or observed), or 1; at most [`MAX_REVISION`]. The number is
    /// reserved: two calls never return the same one (below the maximum).
    pub fn next_revision(&self, key: StateKey) -> u64 {
        let mut table = self.table();
        let next = table
            .revisions
            .get(&key)
            .map_or(1, |r| r.saturating_add(1).min(MAX_REVISION));
        table.revisions.insert(key, next);
        next
    }

    /// The highest revision seen for `key`.
    #[must_use]
    pub fn highest_revision(&self, key: StateKey) -> Option<u64> {
        self.table().revisions.get(&key).copied()
    }

    /// Whether `rev` is older than the highest revision seen for `key`: refuse such an update
    /// (a stale echo or a replayed older entry) if order matters for that state.
    #[must_use]
    pub fn is_rollback(&self, key: StateKey, rev: u64) -> bool {
        self.highest_revision(key).is_some_and(|h| rev < h)
    }

    /// Records `rev` as seen for `key` (keeps the highest; at most [`MAX_REVISION`]).
    pub fn observe_revision(&self, key: StateKey, rev: u64) {
        Self::raise(&mut self.table(), key, rev);
    }

    fn raise(table: &mut Table, key: StateKey, rev: u64) {
        let rev = rev.min(MAX_REVISION);
        let slot = table.revisions.entry(key).or_insert(rev);
        *slot = (*slot).max(rev);
    }

    /// Records an entry the client handed back and holds: its token (kept only when this
    /// connection may refresh it), time step and key position.
    pub(crate) fn hold(&self, key: StateKey, token: &str, step: u64, primary: bool, refresh: bool) {
        let held = Held {
            token: (refresh && self.refresh).then(|| Token::from_string(token.to_owned())),
            len: token.len(),
            step,
            primary,
        };
        self.table().held.insert(key, held);
    }

    /// Re-seals, at the same revision, schema and payload, every entry this connection may
    /// refresh that was sealed in an earlier time step or under a key that is no longer the
    /// ring's first, so state that is in use never ages out and moves to the current key.
    /// An encrypted entry is re-sealed encrypted (decrypted, then encrypted again under the
    /// current step's key with a fresh nonce); a signed one as the kind the recovery seals
    /// (so a recovery built [`encrypted`](crate::RecoveryBuilder::encrypted) moves it to an
    /// encrypted entry).
    /// Returns the updates to send (the client replaces an entry by one of equal revision).
    /// Call it after a reconnect (the [`Endpoint`](super::Endpoint) does) and then at least
    /// once per OTP step on a long-lived connection (the axum session does).
    #[must_use]
    pub fn refresh(&self) -> Vec<StateUpdate> {
        if !self.refresh {
            return Vec::new();
        }
        let step = self.current_step();
        let due: Vec<(StateKey, Token)> = self
            .table()
            .held
            .iter()
            .filter(|(_, h)| h.step < step || !h.primary)
            .filter_map(|(k, h)| h.token.clone().map(|t| (*k, t)))
            .collect();
        due.into_iter()
            .filter_map(|(key, old)| match self.reseal(key, &old) {
                Ok(update) => Some(update),
                Err(e) => {
                    tracing::warn!(
                        target: "state_recovery",
                        key = %key,
                        error = %e,
                        "state entry not refreshed"
                    );
                    None
                }
            })
            .collect()
    }

    /// Seals a held token's payload again (it was verified when restored, or sealed here),
    /// decrypting it first if it is encrypted. The plaintext is wiped when it is sealed.
    fn reseal(&self, key: StateKey, old: &Token) -> Result<StateUpdate, SealError> {
        self.check_sealable()?;
        let held = self
            .recovery
            .held_entry(&self.scope(), old.as_str())
            .map_err(|reason| match reason {
                // As before encrypted entries: a held token that does not decode.
                Reason::TooLarge | Reason::Malformed | Reason::UnsupportedVersion => {
                    SealError::TooLarge {
                        len: old.as_str().len(),
                        max: self.recovery.limits().max_token_bytes(),
                    }
                }
                other => {
                    SealError::Serialize(serde::ser::Error::custom(format!("held entry: {other}")))
                }
            })?;
        let text = std::str::from_utf8(held.payload.as_slice()).map_err(|e| {
            SealError::Serialize(serde::ser::Error::custom(format!("payload: {e}")))
        })?;
        let payload: &RawValue = serde_json::from_str(text).map_err(SealError::Serialize)?;
        let kind = if held.kind.is_encrypted() {
            EntryKind::Encrypted
        } else {
            self.recovery.entry_kind()
        };
        let (token, step) = self.recovery.seal_stepped(
            kind,
            &self.scope(),
            key,
            held.revision,
            held.schema,
            payload,
        )?;
        self.table()
            .held
            .insert(key, Held::sealed(&token, step, self.refresh));
        // The mark is already at this revision; the raise renews the scope's records, so they
        // live as long as the entry they guard.
        if let Some(guard) = &self.guard {
            guard.raise(key, held.revision);
        }
        Ok(StateUpdate::new(key, held.revision, token))
    }

    /// The last event sequence applied on this connection: the one the client's
    /// applied-events entry recorded (0 when it had none, or it was rejected), raised by every
    /// new event since.
    #[must_use]
    pub fn applied_seq(&self) -> u64 {
        self.table().applied
    }

    /// Sets the last applied sequence restored from the client's applied-events entry.
    pub(crate) fn restore_applied(&self, seq: u64) {
        let mut table = self.table();
        table.applied = table.applied.max(seq.min(MAX_SEQ));
    }

    /// Decides what to do with the client's event `seq` (its `$seq`):
    /// - at or below the last applied sequence: [`Accepted::Duplicate`], an acknowledgement
    ///   to send instead of handling it (the client resent an event after a reconnect, and
    ///   the state it restored already has it);
    /// - above it: [`Accepted::New`]; the sequence is recorded as applied and the
    ///   applied-events entry is sealed (key [`Recovery::applied_key`], the next revision,
    ///   payload `{"seq":N}`) into the returned batch, so it reaches the client in the same
    ///   frame as everything the event causes. When that entry cannot be sealed (the context
    ///   cannot seal at all, or the client's entries fill the budget), the event is still new,
    ///   the batch does not [record it](Batch::records_applied), and a warning is logged: a
    ///   resend of it after a reconnect would be applied again.
    ///
    /// # Errors
    /// [`EventError::Disabled`] without [`with_events`](Self::with_events);
    /// [`EventError::InvalidSeq`] for 0 or above [`MAX_SEQ`]; [`EventError::TooFar`] more
    /// than [`MAX_SEQ_GAP`] above a recorded sequence. Nothing is recorded or sealed then.
    pub fn accept_event(&self, seq: u64) -> Result<Accepted, EventError> {
        if !self.events {
            return Err(EventError::Disabled);
        }
        if seq == 0 || seq > MAX_SEQ {
            return Err(EventError::InvalidSeq);
        }
        {
            let mut table = self.table();
            let applied = table.applied;
            if seq <= applied {
                return Ok(Accepted::Duplicate(Batch::new(seq)));
            }
            if applied > 0 && seq.saturating_sub(applied) > MAX_SEQ_GAP {
                return Err(EventError::TooFar { seq, applied });
            }
            table.applied = seq;
        }
        let key = self.recovery.applied_key();
        let rev = self.next_revision(key);
        let payload = AppliedPayload { seq };
        match self.seal_entry(
            self.recovery.entry_kind(),
            key,
            rev,
            APPLIED_SCHEMA,
            &payload,
        ) {
            Ok(update) => Ok(Accepted::New(Batch::applied(seq, update))),
            Err(e) => {
                tracing::warn!(
                    target: "state_recovery",
                    seq,
                    error = %e,
                    "applied-events entry not sealed: a resend of this event would be applied again"
                );
                Ok(Accepted::New(Batch::new(seq)))
            }
        }
    }

    /// Classifies one client message (its text) for a transport's loop: reads its `$seq`
    /// ([`event_seq`](super::event_seq)) and, when it has one, [`accept_event`](Self::accept_event)s
    /// it. Without [`with_events`](Self::with_events) every message is
    /// [`Incoming::Unsequenced`], and the message is not even parsed.
    #[must_use]
    pub fn incoming(&self, message: &[u8]) -> Incoming {
        if !self.events {
            return Incoming::Unsequenced;
        }
        match event_seq(message) {
            Ok(None) => Incoming::Unsequenced,
            Ok(Some(seq)) => self.accept_event(seq).into(),
            Err(e) => Incoming::Refused(e),
        }
    }

    /// The [`EventId`] of this client's event `seq`: the idempotency key for effects outside
    /// sealed state, the same on every worker.
    #[must_use]
    pub fn event_id(&self, seq: u64) -> EventId {
        let (mut m, _) = self.recovery.store_ids();
        let (flag, subject): (&[u8], &[u8]) = match &self.subject {
            None => (&[0], &[]),
            Some(s) => (&[1], s.as_bytes()),
        };
        crate::mac::pae_update(
            &mut m,
            &[
                &[EVENT_ID_LABEL],
                &[self.salt().as_bytes()],
                &[flag, subject],
                &[&seq.to_be_bytes()],
            ],
        );
        let tag = hmac::Mac::finalize(m).into_bytes();
        let mut id = [0u8; 16];
        for (d, s) in id.iter_mut().zip(tag.iter()) {
            *d = *s;
        }
        EventId::from_bytes(id)
    }

    /// Records whether the application used the restored entry for `key` (for the
    /// `recovered` counts).
    pub(crate) fn record_use(&self, key: StateKey, used: bool) {
        self.table().usage.insert(key, used);
    }

    /// What the application did with the restored entry for `key`, if it said.
    pub(crate) fn usage(&self, key: &StateKey) -> Option<bool> {
        self.table().usage.get(key).copied()
    }

    fn current_step(&self) -> u64 {
        self.recovery.otp().step_at(self.recovery.now())
    }

    /// Whose entries these are: the salt and subject, for [`Recovery::open_entries`] and
    /// friends.
    #[must_use]
    pub fn scope(&self) -> Scope<'_> {
        Scope::new(self.salt()).with_optional_subject(self.subject.as_deref())
    }

    /// The client's salt.
    #[must_use]
    pub fn salt(&self) -> &Salt {
        self.salt.get_or_init(Salt::generate)
    }

    /// Whether the salt exists yet: always for a salt the client handed back; for an issued
    /// one, once something needed it (a seal, [`salt`](Self::salt),
    /// [`salt_message`](Self::salt_message)). A request that seals nothing never draws one.
    #[must_use]
    pub fn salt_drawn(&self) -> bool {
        self.salt.get().is_some()
    }

    /// Whether the salt was issued for this connection (the client had none, or sent one that
    /// was not valid), so the client must be sent [`salt_message`](Self::salt_message).
    #[must_use]
    pub const fn salt_issued(&self) -> bool {
        self.salt_issued
    }

    /// `{"type":"salt","salt":...}` for this salt.
    #[must_use]
    pub fn salt_message(&self) -> SaltMessage {
        SaltMessage::new(self.salt().clone())
    }

    /// The authenticated subject entries are bound to.
    #[must_use]
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// The recovery.
    #[must_use]
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // The tables are always consistent (single inserts), so a poisoned lock is usable.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyId, KeyRing, Limits, ManualClock, OtpSettings, Pepper};
    use std::sync::Arc;

    fn recovery(limits: Limits) -> (Recovery, Arc<ManualClock>) {
        let ring = KeyRing::single(KeyId::new("k1").unwrap(), Pepper::generate()).unwrap();
        let clock = Arc::new(ManualClock::new(1_700_000_000));
        let r = Recovery::builder(ring)
            .limits(limits)
            .otp(OtpSettings::new(100, 1).unwrap())
            .clock(clock.clone())
            .build()
            .unwrap();
        (r, clock)
    }

    #[test]
    fn revisions_only_go_up_and_stay_safe_for_javascript() {
        let (r, _) = recovery(Limits::default());
        let ctx = RecoveryContext::fresh(r, None);
        let key = StateKey::from_bytes([1; 16]);
        assert!(ctx.salt_issued());
        assert_eq!(ctx.highest_revision(key), None);
        assert_eq!(ctx.next_revision(key), 1);
        assert_eq!(ctx.next_revision(key), 2);
        ctx.observe_revision(key, 10);
        ctx.observe_revision(key, 4);
        assert_eq!(ctx.highest_revision(key), Some(10));
        assert!(ctx.is_rollback(key, 9));
        assert!(!ctx.is_rollback(key, 10));
        let update = ctx.seal(key, 11, 1, &"v").unwrap();
        assert_eq!((update.key(), update.rev()), (key, 11));
        assert_eq!(ctx.next_revision(key), 12);
        ctx.observe_revision(key, u64::MAX);
        assert_eq!(ctx.highest_revision(key), Some(MAX_REVISION));
        assert_eq!(ctx.next_revision(key), MAX_REVISION);
    }

    #[test]
    fn refresh_reseals_old_steps_at_the_same_revision() {
        let (r, clock) = recovery(Limits::default());
        let ctx = RecoveryContext::fresh(r.clone(), None);
        let key = StateKey::from_bytes([2; 16]);
        let first = ctx
            .seal(key, 7, 3, &serde_json::json!({"a": [1, 2]}))
            .unwrap();
        assert!(ctx.refresh().is_empty(), "nothing is due in the same step");
        clock.advance(100);
        let again = ctx.refresh();
        assert_eq!(again.len(), 1);
        let u = &again[0];
        assert_eq!((u.key(), u.rev()), (key, 7));
        assert_ne!(u.token(), first.token());
        let opened = r
            .open_at::<serde_json::Value>(&ctx.scope(), key, u.token().as_str())
            .unwrap();
        assert_eq!((opened.schema, opened.revision), (3, 7));
        assert_eq!(opened.value, serde_json::json!({"a": [1, 2]}));
        assert_eq!(opened.step, 1_700_000_100 / 100);
        assert!(ctx.refresh().is_empty(), "refreshed entries are current");
    }

    #[test]
    fn without_refresh_nothing_is_resealed() {
        let (r, clock) = recovery(Limits::default());
        let ctx = RecoveryContext::fresh(r, None).without_refresh();
        let key = StateKey::from_bytes([3; 16]);
        ctx.seal(key, 1, 1, &"v").unwrap();
        clock.advance(100);
        assert!(ctx.refresh().is_empty());
        assert_eq!(ctx.budget().entries, 1, "still counted for the budget");
    }

    #[test]
    fn the_budget_keeps_the_bundle_under_its_caps() {
        let limits = Limits::default()
            .with_max_token_bytes(1024)
            .with_max_bundle_bytes(2048)
            .with_max_entries(3);
        let (r, _) = recovery(limits);
        let ctx = RecoveryContext::fresh(r, None);
        let big = "x".repeat(600);
        let k = |i: u8| StateKey::from_bytes([i; 16]);
        ctx.seal(k(1), 1, 1, &big).unwrap();
        ctx.seal(k(2), 1, 1, &big).unwrap();
        // A third large entry would put the bundle over 2 KiB.
        let err = ctx.seal(k(3), 1, 1, &big).unwrap_err();
        assert!(
            matches!(err, SealError::OverBudget { max: 2048, .. }),
            "{err}"
        );
        // Replacing an entry counts its new size only.
        ctx.seal(k(1), 2, 1, &big).unwrap();
        ctx.seal(k(3), 1, 1, &"small").unwrap();
        assert_eq!(
            ctx.seal(k(4), 1, 1, &"small").unwrap_err().to_string(),
            SealError::TooManyEntries { max: 3 }.to_string()
        );
        let b = ctx.budget();
        assert_eq!((b.entries, b.max_entries, b.max_bytes), (3, 3, 2048));
        assert!(b.bytes <= b.max_bytes);
    }
}
