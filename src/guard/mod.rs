//! The revocation and rollback guard: per-subject and per-scope state that every worker
//! shares through a [`GuardStore`], checked after the MAC at every reconnect.
//!
//! Without it, an authentic entry opens anywhere inside the window: a user's older entries
//! can be replayed (rollback), and the only way to kill a user's entries is to remove a key,
//! which loses everyone's state. With a [`Guard`] on the [`Endpoint`](crate::protocol::Endpoint)
//! (or [`StateRecoveryLayer::with_guard`](crate::layer::StateRecoveryLayer::with_guard)):
//!
//! - **Revocation.** [`Guard::revoke_subject`] (logout) makes every entry of that subject, on
//!   every worker sharing the store, fail with `revoked` at its next reconnect; the client is
//!   given a fresh salt, so it drops its stash and nothing sealed under the old salt ever
//!   opens again. [`Guard::revoke_salt`] does the same for one client (one tab or device, and
//!   the only way for an anonymous one). No format change: the store keeps per subject an
//!   epoch, and per scope (salt and subject) the epoch it was registered at; a scope
//!   registered at an older epoch is revoked.
//! - **Rollback.** Every seal raises a high-water mark per (scope, state key), written behind
//!   (never on the seal's path); at reconnect an entry below its mark fails with
//!   `rolled-back` (an equal revision is fine). The context's revisions are seeded with every
//!   mark of the scope, so new seals continue above them even for keys whose entry the client
//!   no longer holds.
//! - **One round trip per reconnect**, bounded by a timeout (100 ms by default): the subject's
//!   epoch, the scope's record (registered when new; a fresh salt is registered in the same
//!   call), and its marks. When the store fails or is slow, the [`GuardPolicy`] decides:
//!   [`FailOpen`](GuardPolicy::FailOpen) restores without the guard (logged as a warning and
//!   counted), [`FailClosed`](GuardPolicy::FailClosed) restores nothing (`guard-unavailable`)
//!   but keeps the client's salt and seals nothing, so its stash comes back once the store
//!   answers.
//!
//! The store sees keyed hashes ([`StoreId`]) of salts and subjects, never the values: see
//! SECURITY.md (the guard) for what is hashed, the guarantees, what a crash loses, and what
//! a compromised store allows.
//!
//! ```
//! use std::sync::Arc;
//! use state_recovery::guard::{Guard, GuardPolicy, InProcessStore};
//! use state_recovery::protocol::Endpoint;
//! use state_recovery::{KeyId, KeyRing, Pepper, Reason, Recovery, reconnect_message, state_key};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let recovery = Recovery::builder(KeyRing::single(KeyId::new("k1")?, Pepper::generate())?)
//!     .location_key(Pepper::generate()) // also keys the store's hashed ids
//!     .build()?;
//! let store = Arc::new(InProcessStore::new()); // RedisStore (feature `redis`) for clusters
//! let guard = Guard::builder(&recovery, store).policy(GuardPolicy::FailClosed).build()?;
//! let endpoint = Endpoint::new(recovery.clone()).with_guard(guard.clone());
//!
//! // A new client gets a salt (registered in the store in the same round trip) and state.
//! let first = endpoint.recover_guarded(None, Some("alice")).await;
//! let key = recovery.state_key(&state_key!("cart"));
//! let update = first.context().seal(key, 1, 1, &["tea"])?;
//! let message = reconnect_message(first.context().salt(), [update.token().as_str()]);
//!
//! // Logout, on any worker sharing the store: her entries are refused everywhere.
//! guard.revoke_subject("alice").await?;
//! let again = endpoint.recover_guarded(Some(message.as_bytes()), Some("alice")).await;
//! assert_eq!(again.rejected()[0].reason, Reason::Revoked);
//! assert!(again.salt_message().is_some()); // a fresh salt: the client drops its stash
//! # Ok(()) }
//! ```

mod memory;
mod queue;
#[cfg(feature = "redis")]
mod redis;
mod store;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hmac::Mac as _;

#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
pub use memory::InProcessStore;
pub use store::{
    CheckReply, CheckRequest, GuardStore, RaiseBatch, RaiseReply, ScopeMarks, ScopeStatus,
    StoreError, StoreFuture, StoreId,
};

use crate::error::ConfigError;
use crate::key::StateKey;
use crate::mac::{self, HmacSha256};
use crate::protocol::MAX_REVISION;
use crate::recovery::Recovery;
use crate::secret::{Pepper, Salt};
use queue::{Raise, WriteSettings, Writer};

/// What a guard does when its store fails or does not answer within the timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuardPolicy {
    /// Restore without the guard: entries that verify are restored, whether revoked or
    /// rolled back; logged as a warning (reason `guard-unavailable`) and counted
    /// ([`GuardStats::failed_open`]). Seals still queue their marks, written when the store is
    /// back. For state where availability matters more than revocation.
    FailOpen,
    /// Restore nothing: every entry that verified is rejected as `guard-unavailable`. Like a
    /// missing subject on an endpoint that requires one, this does not "start fresh" by
    /// issuing a new salt (which would make the client drop its stash): the client keeps
    /// its salt, the context seals nothing ([`SealError::GuardUnavailable`](crate::SealError::GuardUnavailable)),
    /// so nothing overwrites the stash, and it is restored (and checked) at the first
    /// reconnect after the store answers again. A new client still gets a salt. The default.
    FailClosed,
}

/// How a reconnect went with the guard, for the application (the client is told counts only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GuardVerdict {
    /// No guard was consulted: the endpoint has none, or nothing needed it (a message refused
    /// without a subject on an endpoint that requires one).
    Off,
    /// The store answered: entries below their high-water mark were rejected as
    /// `rolled-back`, the others restored.
    Checked,
    /// The scope was revoked: every verified entry was rejected as `revoked` and the client
    /// was given a fresh salt.
    Revoked,
    /// The store failed or did not answer in time (or the synchronous API was used on an
    /// endpoint with a guard); the policy decided.
    Unavailable(GuardPolicy),
}

/// Counters of one guard (and the contexts it made), since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GuardStats {
    /// Reconnects checked with the store (answered or not).
    pub checks: u64,
    /// Checks that failed or timed out and were let through ([`GuardPolicy::FailOpen`]).
    pub failed_open: u64,
    /// Checks that failed or timed out and restored nothing ([`GuardPolicy::FailClosed`]),
    /// and reconnects given to the synchronous API of a guarded endpoint.
    pub failed_closed: u64,
    /// Reconnects whose scope was revoked.
    pub revoked: u64,
    /// Entries rejected as `rolled-back`.
    pub rolled_back: u64,
    /// Raises written to the store.
    pub marks_written: u64,
    /// Raises dropped, oldest first, because the write-behind queue was full (the store was
    /// down or slow for long): those revisions are not guarded against rollback.
    pub marks_dropped: u64,
    /// Marks for new state keys the store refused because the scope held the most marks.
    pub marks_refused: u64,
    /// Write-behind batches that failed or timed out (and were retried).
    pub write_failures: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    checks: AtomicU64,
    failed_open: AtomicU64,
    failed_closed: AtomicU64,
    revoked: AtomicU64,
    rolled_back: AtomicU64,
    pub(crate) marks_written: AtomicU64,
    pub(crate) marks_dropped: AtomicU64,
    pub(crate) marks_refused: AtomicU64,
    pub(crate) write_failures: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// The labels of the hashed store ids.
const SUBJECT_ID: &[u8] = b"subject";
const SCOPE_ID: &[u8] = b"scope";

/// The store ids of one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScopeIds {
    pub(crate) scope: StoreId,
    pub(crate) subject: Option<StoreId>,
}

/// What a context holds of its guard: where to queue its marks, and its scope's ids.
#[derive(Clone)]
pub(crate) struct GuardLink {
    writer: Arc<Writer>,
    ids: ScopeIds,
}

impl GuardLink {
    /// Queues a mark for `key` at `rev` (never waits).
    pub(crate) fn raise(&self, key: StateKey, rev: u64) {
        self.writer.push(Raise {
            scope: self.ids.scope,
            subject: self.ids.subject,
            key,
            rev: rev.min(MAX_REVISION),
            // Set by the writer (the seal's time plus the mark delay).
            due: tokio::time::Instant::now(),
        });
    }
}

impl fmt::Debug for GuardLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardLink").finish_non_exhaustive()
    }
}

struct Inner {
    store: Arc<dyn GuardStore>,
    writer: Arc<Writer>,
    policy: GuardPolicy,
    timeout: Duration,
    write_timeout: Duration,
    ttl: Duration,
    max_marks: usize,
    ids: HmacSha256,
    stats: Arc<Stats>,
}

/// The revocation and rollback guard of one worker: a [`GuardStore`] shared with the other
/// workers, the [`GuardPolicy`], the timeout, and the write-behind queue of high-water marks.
/// Build one at start-up with [`Guard::builder`], give it to the endpoint
/// ([`Endpoint::with_guard`](crate::protocol::Endpoint::with_guard)) or the layer, and call
/// [`flush`](Self::flush) when the worker stops. Cheap to clone (clones share everything).
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("policy", &self.inner.policy)
            .field("timeout", &self.inner.timeout)
            .field("ttl", &self.inner.ttl)
            .field("max_marks", &self.inner.max_marks)
            .field("queued", &self.inner.writer.queued())
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// The default timeout of the check at every reconnect.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);
    /// The default timeout of a write (a batch of marks, a revocation).
    pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
    /// The default interval of the write-behind.
    pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(25);
    /// The default mark delay: how long after its seal a mark is written at the earliest.
    pub const DEFAULT_MARK_DELAY: Duration = Duration::from_secs(1);
    /// The default number of queued raises that triggers a write before the interval.
    pub const DEFAULT_FLUSH_BATCH: usize = 256;
    /// The default capacity of the write-behind queue (raises; the oldest are dropped past it).
    pub const DEFAULT_QUEUE_CAPACITY: usize = 16_384;

    /// Starts building a guard for `recovery` (its OTP window sets the records' time to live,
    /// its entry cap the marks per scope, its location key the key of the hashed ids) over
    /// `store`.
    pub fn builder(recovery: &Recovery, store: Arc<dyn GuardStore>) -> GuardBuilder {
        let window = recovery.otp().max_age_secs().saturating_add(1);
        let (ids, secret) = recovery.store_ids();
        GuardBuilder {
            store,
            policy: GuardPolicy::FailClosed,
            timeout: Self::DEFAULT_TIMEOUT,
            write_timeout: Self::DEFAULT_WRITE_TIMEOUT,
            window: Duration::from_secs(window),
            ttl: None,
            max_marks: recovery.limits().max_entries().saturating_mul(2),
            min_marks: recovery.limits().max_entries(),
            flush_interval: Self::DEFAULT_FLUSH_INTERVAL,
            mark_delay: Self::DEFAULT_MARK_DELAY,
            flush_batch: Self::DEFAULT_FLUSH_BATCH,
            queue_capacity: Self::DEFAULT_QUEUE_CAPACITY,
            ids,
            secret_ids: secret,
        }
    }

    /// A guard over a new [`InProcessStore`] with the defaults: for one worker, and tests.
    ///
    /// # Errors
    /// None with the defaults; see [`GuardBuilder::build`].
    pub fn in_process(recovery: &Recovery) -> Result<Self, ConfigError> {
        Self::builder(recovery, Arc::new(InProcessStore::new())).build()
    }

    /// The policy when the store is unavailable.
    #[must_use]
    pub fn policy(&self) -> GuardPolicy {
        self.inner.policy
    }

    /// The timeout of the check at every reconnect.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> GuardStats {
        let s = &self.inner.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        GuardStats {
            checks: get(&s.checks),
            failed_open: get(&s.failed_open),
            failed_closed: get(&s.failed_closed),
            revoked: get(&s.revoked),
            rolled_back: get(&s.rolled_back),
            marks_written: get(&s.marks_written),
            marks_dropped: get(&s.marks_dropped),
            marks_refused: get(&s.marks_refused),
            write_failures: get(&s.write_failures),
        }
    }

    /// How many raises wait in the write-behind queue.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.inner.writer.queued()
    }

    /// Revokes every entry of `subject` (logout): from now on, every reconnect of that subject,
    /// on every worker sharing the store, with a salt registered before this call is refused
    /// (`revoked`) and given a fresh salt. Sessions already connected are not closed: close
    /// them yourself. Bounded by the write timeout.
    ///
    /// # Errors
    /// [`StoreError`] when the store failed or did not answer: nothing was revoked (say so to
    /// the user, and retry).
    pub async fn revoke_subject(&self, subject: &str) -> Result<(), StoreError> {
        let id = self.subject_id(subject);
        let t = self.inner.write_timeout;
        let done = tokio::time::timeout(t, self.inner.store.revoke_subject(&id, self.inner.ttl))
            .await
            .unwrap_or(Err(StoreError::Timeout(t)));
        log_revocation("subject", &done);
        done
    }

    /// Revokes the entries of one client: its `salt` (from
    /// [`RecoveryContext::salt`](crate::RecoveryContext::salt)) with the `subject` its
    /// connection has (`None` for an anonymous client). The next reconnect with that salt is
    /// refused (`revoked`) and given a fresh salt. Bounded by the write timeout.
    ///
    /// # Errors
    /// [`StoreError`] when the store failed or did not answer: nothing was revoked.
    pub async fn revoke_salt(&self, salt: &Salt, subject: Option<&str>) -> Result<(), StoreError> {
        let ids = self.scope_ids(salt, subject);
        let t = self.inner.write_timeout;
        let done =
            tokio::time::timeout(t, self.inner.store.revoke_scope(&ids.scope, self.inner.ttl))
                .await
                .unwrap_or(Err(StoreError::Timeout(t)));
        log_revocation("salt", &done);
        done
    }

    /// Writes every queued high-water mark now, after the batch in flight (call it when the
    /// worker stops, after its sessions are gone: what is still queued when the process exits
    /// is lost, see SECURITY.md). Each batch is bounded by the write timeout.
    ///
    /// # Errors
    /// [`StoreError`] of the first batch that failed (it stays queued).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.inner.writer.flush().await
    }

    /// The hashed id of a subject.
    fn subject_id(&self, subject: &str) -> StoreId {
        self.id(&[&[SUBJECT_ID], &[subject.as_bytes()]])
    }

    /// The hashed ids of a scope.
    pub(crate) fn scope_ids(&self, salt: &Salt, subject: Option<&str>) -> ScopeIds {
        let (flag, text): (&[u8], &[u8]) = match subject {
            None => (&[0], &[]),
            Some(s) => (&[1], s.as_bytes()),
        };
        ScopeIds {
            scope: self.id(&[&[SCOPE_ID], &[salt.as_bytes()], &[flag, text]]),
            subject: subject.map(|s| self.subject_id(s)),
        }
    }

    fn id(&self, pieces: &[&[&[u8]]]) -> StoreId {
        let mut m = self.inner.ids.clone();
        mac::pae_update(&mut m, pieces);
        let tag = m.finalize().into_bytes();
        let mut id = [0u8; 16];
        for (d, s) in id.iter_mut().zip(tag.iter()) {
            *d = *s;
        }
        StoreId::from_bytes(id)
    }

    /// The link a context of this scope queues its marks through.
    pub(crate) fn link(&self, ids: ScopeIds) -> GuardLink {
        GuardLink {
            writer: Arc::clone(&self.inner.writer),
            ids,
        }
    }

    /// The reconnect's round trip, bounded by the timeout. `presented` is the client's salt,
    /// `fresh` the salt it gets if it has none or is revoked.
    pub(crate) async fn check(
        &self,
        presented: Option<&ScopeIds>,
        subject: Option<StoreId>,
        fresh: &ScopeIds,
    ) -> Result<CheckReply, StoreError> {
        bump(&self.inner.stats.checks, 1);
        let request = CheckRequest {
            subject,
            presented: presented.map(|p| p.scope),
            fresh: fresh.scope,
            ttl: self.inner.ttl,
            max_marks: self.inner.max_marks,
        };
        let t = self.inner.timeout;
        let mut reply = tokio::time::timeout(t, self.inner.store.check(&request))
            .await
            .unwrap_or(Err(StoreError::Timeout(t)))?;
        // The store is shared, not trusted to be small: hold the reply to the cap.
        reply.marks.truncate(self.inner.max_marks);
        if presented.is_none() != (reply.status == ScopeStatus::Fresh) {
            return Err(StoreError::Protocol(
                "the status does not fit the request (fresh if and only if no scope was presented)"
                    .into(),
            ));
        }
        if reply.status == ScopeStatus::Revoked {
            bump(&self.inner.stats.revoked, 1);
        }
        Ok(reply)
    }

    /// Counts a check that failed, logs it, and says what the policy does.
    pub(crate) fn unavailable(&self, error: &StoreError) -> GuardPolicy {
        let policy = self.inner.policy;
        let (counter, what) = match policy {
            GuardPolicy::FailOpen => (
                &self.inner.stats.failed_open,
                "restoring WITHOUT the guard (fail open)",
            ),
            GuardPolicy::FailClosed => (
                &self.inner.stats.failed_closed,
                "restoring nothing; the client keeps its salt (fail closed)",
            ),
        };
        bump(counter, 1);
        tracing::warn!(
            target: "state_recovery",
            reason = crate::Reason::GuardUnavailable.code(),
            error = %error,
            "guard store unavailable: {what}"
        );
        policy
    }

    /// Counts a reconnect given to the synchronous API of a guarded endpoint.
    pub(crate) fn bypassed(&self) {
        bump(&self.inner.stats.failed_closed, 1);
        tracing::warn!(
            target: "state_recovery",
            reason = crate::Reason::GuardUnavailable.code(),
            "the synchronous Endpoint::recover (or recover_first, fresh_client, refused) was \
             called on an endpoint with a guard, which it cannot consult: nothing restored, \
             nothing will be sealed; use recover_guarded (and friends)"
        );
    }

    /// Counts rolled-back entries.
    pub(crate) fn rolled_back(&self, n: usize) {
        bump(
            &self.inner.stats.rolled_back,
            u64::try_from(n).unwrap_or(u64::MAX),
        );
    }
}

fn log_revocation(what: &str, done: &Result<(), StoreError>) {
    match done {
        Ok(()) => tracing::info!(target: "state_recovery", what, "guard: revoked"),
        Err(e) => {
            tracing::warn!(target: "state_recovery", what, error = %e, "guard: revocation failed")
        }
    }
}

/// Builds a [`Guard`]: every setter takes `self` by value; [`build`](Self::build) checks
/// the settings.
#[must_use]
pub struct GuardBuilder {
    store: Arc<dyn GuardStore>,
    policy: GuardPolicy,
    timeout: Duration,
    write_timeout: Duration,
    window: Duration,
    ttl: Option<Duration>,
    max_marks: usize,
    min_marks: usize,
    flush_interval: Duration,
    mark_delay: Duration,
    flush_batch: usize,
    queue_capacity: usize,
    ids: HmacSha256,
    secret_ids: bool,
}

impl fmt::Debug for GuardBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardBuilder")
            .field("policy", &self.policy)
            .field("timeout", &self.timeout)
            .field("ttl", &self.ttl)
            .field("max_marks", &self.max_marks)
            .finish_non_exhaustive()
    }
}

impl GuardBuilder {
    /// What to do when the store fails or is slow ([`GuardPolicy::FailClosed`] by default).
    pub fn policy(mut self, policy: GuardPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How long the check at a reconnect may take before the store counts as unavailable
    /// ([`Guard::DEFAULT_TIMEOUT`], 100 ms, by default).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a write (a batch of marks, a revocation) may take
    /// ([`Guard::DEFAULT_WRITE_TIMEOUT`], 1 s, by default).
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// How long a record (a scope's registration, a subject's epoch, a scope's marks) lives
    /// after its last use: at least the OTP window (`step × (2 × skew + 1)`), so no entry
    /// outlives the record that guards it. By default twice the window (24 h with the default
    /// OTP settings).
    pub fn record_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The most marks (state keys) a scope holds in the store: a new key past it is not
    /// guarded (and counted, [`GuardStats::marks_refused`]), so no client can grow the store
    /// without bound. At least the entry cap; by default twice it (2048).
    pub fn max_marks(mut self, max: usize) -> Self {
        self.max_marks = max;
        self
    }

    /// How often the write-behind writes what seals queued
    /// ([`Guard::DEFAULT_FLUSH_INTERVAL`], 25 ms, by default; 1 ms to 10 s).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// How long after its seal a revision's mark is written at the earliest
    /// ([`Guard::DEFAULT_MARK_DELAY`], 1 s, by default; at most 60 s; zero: at the next
    /// flush).
    ///
    /// A mark raised as soon as an update is sealed would refuse, as `rolled-back`, the
    /// entry the client still holds whenever the update never reached it: a worker killed
    /// right after sealing (its socket's unsent bytes are discarded when the kernel resets
    /// the connection), the very case this crate is for. With the delay, a worker that dies
    /// within it leaves no mark for what it sealed last, so nothing is lost; the price is
    /// that a replay of an entry superseded less than the delay before its worker crashed is
    /// not refused. A worker that stops gracefully ([`Guard::flush`] after its sessions
    /// closed) writes every mark at once.
    pub fn mark_delay(mut self, delay: Duration) -> Self {
        self.mark_delay = delay;
        self
    }

    /// How many queued raises trigger a write before the interval ([`Guard::DEFAULT_FLUSH_BATCH`]).
    pub fn flush_batch(mut self, batch: usize) -> Self {
        self.flush_batch = batch;
        self
    }

    /// The most raises the write-behind queue holds; past it the oldest are dropped and
    /// counted ([`GuardStats::marks_dropped`]) ([`Guard::DEFAULT_QUEUE_CAPACITY`]).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// The key the store ids are hashed with, instead of one derived from the recovery's
    /// location key. Like the location key it must never change (every record would be
    /// lost: revocations undone).
    pub fn id_key(mut self, key: &Pepper) -> Self {
        let mut id_key = zeroize::Zeroizing::new([0u8; 32]);
        let mut m = mac::keyed(key.expose_bytes());
        m.update(crate::key::STORE_ID_LABEL);
        mac::finalize_into(m, &mut id_key);
        self.ids = mac::keyed(id_key.as_ref());
        self.secret_ids = true;
        self
    }

    /// Checks the settings and builds the guard. Without a secret key for the ids (a location
    /// key on the recovery, or [`id_key`](Self::id_key)), logs a warning: the ids are then
    /// keyed with a key derived from the namespace, which is not secret, so whoever reads the
    /// store can confirm a guessed subject id (salts stay hidden: they are random).
    ///
    /// # Errors
    /// [`ConfigError::InvalidLimit`] for a zero timeout, a record time to live shorter than
    /// the OTP window, fewer marks than the entry cap, a flush interval outside 1 ms to 10 s,
    /// a mark delay over 60 s,
    /// or a zero batch or queue capacity.
    pub fn build(self) -> Result<Guard, ConfigError> {
        let invalid = |name, detail| Err(ConfigError::InvalidLimit { name, detail });
        if self.timeout.is_zero() || self.write_timeout.is_zero() {
            return invalid("guard timeout", "must be more than zero");
        }
        let ttl = self.ttl.unwrap_or(self.window.saturating_mul(2));
        if ttl < self.window {
            return invalid("guard record ttl", "must be at least the OTP window");
        }
        if self.max_marks < self.min_marks {
            return invalid("guard max_marks", "must be at least the entry cap");
        }
        if self.flush_interval < Duration::from_millis(1)
            || self.flush_interval > Duration::from_secs(10)
        {
            return invalid("guard flush interval", "must be 1 ms to 10 s");
        }
        if self.mark_delay > Duration::from_secs(60) {
            return invalid("guard mark delay", "must be at most 60 s");
        }
        if self.flush_batch == 0 || self.queue_capacity == 0 {
            return invalid(
                "guard flush batch",
                "batch and queue capacity must be at least 1",
            );
        }
        if !self.secret_ids {
            tracing::warn!(
                target: "state_recovery",
                "guard: no location key (STATE_RECOVERY_LOCATION_KEY) nor id key: store ids are \
                 hashed with a key derived from the namespace, so whoever reads the store can \
                 confirm guessed subject ids"
            );
        }
        let stats = Arc::new(Stats::default());
        let settings = WriteSettings {
            ttl,
            max_marks: self.max_marks,
            interval: self.flush_interval,
            batch: self.flush_batch,
            capacity: self.queue_capacity,
            write_timeout: self.write_timeout,
            delay: self.mark_delay,
        };
        let writer = Arc::new(Writer::new(
            Arc::clone(&self.store),
            settings,
            Arc::clone(&stats),
        ));
        Ok(Guard {
            inner: Arc::new(Inner {
                store: self.store,
                writer,
                policy: self.policy,
                timeout: self.timeout,
                write_timeout: self.write_timeout,
                ttl,
                max_marks: self.max_marks,
                ids: self.ids,
                stats,
            }),
        })
    }
}
