//! The per-connection context: whose entries these are, and the highest revision seen per key.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use super::message::{SaltMessage, StateUpdate};
use crate::error::SealError;
use crate::key::StateKey;
use crate::recovery::{Recovery, Scope};
use crate::secret::Salt;

/// One connection's (or one request's) scope for sealing: the client's salt, the
/// authenticated subject, the [`Recovery`], and the highest revision seen per state key.
///
/// Methods take `&self` (the revision table is behind a mutex), so it can be shared with
/// `Arc` between the tasks of one connection.
pub struct RecoveryContext {
    recovery: Recovery,
    salt: Salt,
    salt_issued: bool,
    subject: Option<String>,
    revisions: Mutex<BTreeMap<StateKey, u64>>,
}

impl fmt::Debug for RecoveryContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The salt is redacted by its own Debug; the subject is the app's user id.
        f.debug_struct("RecoveryContext")
            .field("salt", &self.salt)
            .field("salt_issued", &self.salt_issued)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl RecoveryContext {
    /// A context for a client that handed back `salt` (for framework authors: the layer's
    /// extractors build contexts themselves).
    #[must_use]
    pub fn new(recovery: Recovery, salt: Salt, subject: Option<String>) -> Self {
        Self {
            recovery,
            salt,
            salt_issued: false,
            subject,
            revisions: Mutex::new(BTreeMap::new()),
        }
    }

    /// A context with a freshly generated salt, which the client must be sent
    /// ([`salt_issued`](Self::salt_issued) is true).
    #[must_use]
    pub fn fresh(recovery: Recovery, subject: Option<String>) -> Self {
        Self {
            salt_issued: true,
            ..Self::new(recovery, Salt::generate(), subject)
        }
    }

    /// Seals `value` as the entry for `key` at revision `rev`, with the app's `schema`
    /// version, for this client's salt and subject, and records `rev` as seen.
    ///
    /// # Errors
    /// [`SealError`] if the value does not serialize or is over a limit.
    pub fn seal<T: Serialize + ?Sized>(
        &self,
        key: StateKey,
        rev: u64,
        schema: u32,
        value: &T,
    ) -> Result<StateUpdate, SealError> {
        let token = self.recovery.seal(&self.scope(), key, rev, schema, value)?;
        self.observe_revision(key, rev);
        Ok(StateUpdate::new(key, rev, token))
    }

    /// The next revision for `key`: one more than the highest seen (restored, sealed or
    /// observed), or 1. The number is reserved: two calls never return the same one.
    pub fn next_revision(&self, key: StateKey) -> u64 {
        let mut table = self.table();
        let next = table.get(&key).map_or(1, |r| r.saturating_add(1));
        table.insert(key, next);
        next
    }

    /// The highest revision seen for `key`.
    #[must_use]
    pub fn highest_revision(&self, key: StateKey) -> Option<u64> {
        self.table().get(&key).copied()
    }

    /// Whether `rev` is older than the highest revision seen for `key`: refuse such an update
    /// (a stale echo or a replayed older entry) if order matters for that state.
    #[must_use]
    pub fn is_rollback(&self, key: StateKey, rev: u64) -> bool {
        self.highest_revision(key).is_some_and(|h| rev < h)
    }

    /// Records `rev` as seen for `key` (keeps the highest).
    pub fn observe_revision(&self, key: StateKey, rev: u64) {
        let mut table = self.table();
        let slot = table.entry(key).or_insert(rev);
        *slot = (*slot).max(rev);
    }

    /// Whose entries these are: the salt and subject, for [`Recovery::open_entries`] and
    /// friends.
    #[must_use]
    pub fn scope(&self) -> Scope<'_> {
        Scope::new(&self.salt).with_optional_subject(self.subject.as_deref())
    }

    /// The client's salt.
    #[must_use]
    pub fn salt(&self) -> &Salt {
        &self.salt
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
        SaltMessage::new(self.salt.clone())
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

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<StateKey, u64>> {
        // The table is always consistent (single inserts), so a poisoned lock is still usable.
        self.revisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyId, KeyRing, Pepper};

    #[test]
    fn revisions_only_go_up() {
        let ring = KeyRing::single(KeyId::new("k1").unwrap(), Pepper::generate()).unwrap();
        let ctx = RecoveryContext::fresh(Recovery::builder(ring).build().unwrap(), None);
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
    }
}
