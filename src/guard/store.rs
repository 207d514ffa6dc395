//! The store trait every worker's guard shares, and the values that cross it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::key::StateKey;

/// The future a [`GuardStore`] method returns: boxed, so the trait is object-safe on Rust 1.80
/// (`Arc<dyn GuardStore>`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A hashed id the store sees instead of a salt or a subject: the first 16 bytes of
/// `HMAC(store_id_key, PAE(kind, ...))` (SECURITY.md, the guard). Its `Display` is 32 lowercase
/// hex digits, which is what [`RedisStore`](super::RedisStore) puts in its keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreId([u8; 16]);

impl StoreId {
    /// An id from its bytes (for stores that read ids back, and tests).
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The id's bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreId({self})")
    }
}

/// Why a store call failed. The guard treats every failure (and a call that does not answer
/// within its timeout) as "the store is unavailable" and applies its
/// [`GuardPolicy`](super::GuardPolicy).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The call did not finish within the guard's timeout.
    #[error("the guard store did not answer within {0:?}")]
    Timeout(Duration),
    /// The store could not be reached or answered with an error (the text says which; it
    /// never contains ids, salts or subjects).
    #[error("the guard store failed: {0}")]
    Unavailable(String),
    /// The store answered something this crate does not understand.
    #[error("the guard store answered something unexpected: {0}")]
    Protocol(String),
}

/// One reconnect's question to the store, asked in one round trip:
///
/// 1. read the subject's revocation epoch (0 when it has none) and renew its time to live;
/// 2. for the scope the client presented (its salt and subject): read its record, or register
///    it at the subject's current epoch when it has none (a salt seen for the first time, or
///    whose record expired); renew it; answer [`ScopeStatus::Revoked`] when its record is a
///    tombstone ([`revoke_scope`](GuardStore::revoke_scope)) or holds another epoch than the
///    subject's current one ([`revoke_subject`](GuardStore::revoke_subject) since);
/// 3. unless revoked, read every high-water mark of that scope (at most
///    [`max_marks`](Self::max_marks)) and renew them;
/// 4. when no scope was presented (a new client) or it is revoked, register the
///    [`fresh`](Self::fresh) scope at the subject's current epoch (the salt the client is
///    about to be given), so a salt is never handed out unregistered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckRequest {
    /// The hashed subject, when the connection has one.
    pub subject: Option<StoreId>,
    /// The hashed scope (salt and subject) the client presented, if it presented a salt.
    pub presented: Option<StoreId>,
    /// The hashed scope of the fresh salt to register when `presented` is `None` or revoked.
    pub fresh: StoreId,
    /// How long records and marks live after their last use.
    pub ttl: Duration,
    /// The most marks a scope holds (and the most a reply may carry).
    pub max_marks: usize,
}

/// What the store knows of a presented scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeStatus {
    /// No scope was presented; the fresh scope is registered.
    Fresh,
    /// The scope is registered at the subject's current epoch.
    Known,
    /// The scope had no record and is now registered at the subject's current epoch.
    Registered,
    /// The scope was revoked; the fresh scope is registered instead.
    Revoked,
}

/// The store's answer to a [`CheckRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckReply {
    /// What the store knows of the presented scope.
    pub status: ScopeStatus,
    /// Every high-water mark of the presented scope (empty when revoked or fresh): the highest
    /// revision sealed per state key.
    pub marks: Vec<(StateKey, u64)>,
}

impl CheckReply {
    /// A reply (for store implementations).
    #[must_use]
    pub const fn new(status: ScopeStatus, marks: Vec<(StateKey, u64)>) -> Self {
        Self { status, marks }
    }
}

/// The marks to raise for one scope, written behind seals in batches.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScopeMarks {
    /// The hashed scope (salt and subject).
    pub scope: StoreId,
    /// The hashed subject, when the scope has one.
    pub subject: Option<StoreId>,
    /// The revisions sealed, one per state key (the highest of the batch).
    pub marks: Vec<(StateKey, u64)>,
}

/// A batch of [`ScopeMarks`] for [`GuardStore::raise`].
///
/// For each scope, the store:
/// - registers it at its subject's current epoch when it has no record (a salt given out
///   while the store was down), and renews the record and the subject's epoch;
/// - raises each mark to the given revision when that is higher ("raise only": an older or
///   equal revision changes nothing, so batches may be written in any order, twice, or
///   concurrently);
/// - adds a mark for a new state key only while the scope holds fewer than
///   [`max_marks`](Self::max_marks) (a new key past the cap is refused and counted: it is then
///   not guarded, and never refused by mistake);
/// - renews the marks' time to live.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RaiseBatch {
    /// The scopes and their marks.
    pub scopes: Vec<ScopeMarks>,
    /// How long records and marks live after their last use.
    pub ttl: Duration,
    /// The most marks a scope holds.
    pub max_marks: usize,
}

/// What a [`GuardStore::raise`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RaiseReply {
    /// Marks for new state keys refused because their scope held `max_marks` already.
    pub refused: u64,
}

impl RaiseReply {
    /// A reply (for store implementations).
    #[must_use]
    pub const fn new(refused: u64) -> Self {
        Self { refused }
    }
}

/// The per-subject and per-scope state that every worker's [`Guard`](super::Guard) shares:
/// revocation epochs, scope records and high-water marks. The store sees only
/// [`StoreId`]s (keyed hashes), state keys and revisions: never a salt, a subject, a token
/// or a payload.
///
/// [`InProcessStore`](super::InProcessStore) is the default (one worker, tests);
/// [`RedisStore`](super::RedisStore) (feature `redis`) is the one for clusters. Every method
/// returns a boxed future, so the trait is object-safe; the guard bounds each call with a
/// timeout, so a store need not.
pub trait GuardStore: Send + Sync + 'static {
    /// Answers one reconnect in one round trip: see [`CheckRequest`] for what it does.
    fn check<'a>(&'a self, request: &'a CheckRequest) -> StoreFuture<'a, CheckReply>;

    /// Raises high-water marks (the write-behind of seals): see [`RaiseBatch`].
    fn raise<'a>(&'a self, batch: &'a RaiseBatch) -> StoreFuture<'a, RaiseReply>;

    /// Increments the subject's revocation epoch (giving it a time to live of `ttl`), so every
    /// scope registered before is revoked at its next check.
    fn revoke_subject<'a>(&'a self, subject: &'a StoreId, ttl: Duration) -> StoreFuture<'a, ()>;

    /// Replaces the scope's record with a tombstone (time to live `ttl`), so the scope is
    /// revoked at its next check, whatever its epoch.
    fn revoke_scope<'a>(&'a self, scope: &'a StoreId, ttl: Duration) -> StoreFuture<'a, ()>;
}
