//! The revocation and rollback guard over a store shared by several endpoints ("workers"):
//! the in-process store, and test stores that fail or hang. (Against a real redis-server:
//! `guard_redis.rs`, feature `redis`.)

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use state_recovery::guard::{
    CheckReply, CheckRequest, Guard, GuardPolicy, GuardStore, GuardVerdict, InProcessStore,
    RaiseBatch, RaiseReply, StoreError, StoreFuture, StoreId,
};
use state_recovery::protocol::{Endpoint, Recovered};
use state_recovery::{
    reconnect_message, state_key, Limits, Pepper, Reason, Recovery, Salt, SealError, StateKey,
};

use crate::common::ring;

pub fn recovery_with(limits: Limits) -> Recovery {
    Recovery::builder(ring(&[("k1", 1)]))
        .namespace("guard-test")
        .location_key(crate::common::pepper(9))
        .limits(limits)
        .build()
        .unwrap()
}

pub fn recovery() -> Recovery {
    recovery_with(Limits::default())
}

/// A store that answers (0), fails (1) or never answers (2), over an in-process store.
#[derive(Default)]
pub struct Switch {
    pub inner: InProcessStore,
    mode: AtomicU8,
}

impl Switch {
    pub const OK: u8 = 0;
    pub const FAIL: u8 = 1;
    pub const HANG: u8 = 2;

    pub fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    fn gate<'a, T: Send + 'a>(&'a self, answer: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
        match self.mode.load(Ordering::SeqCst) {
            Self::OK => answer,
            Self::FAIL => Box::pin(async { Err(StoreError::Unavailable("switched off".into())) }),
            _ => Box::pin(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Err(StoreError::Unavailable("hung".into()))
            }),
        }
    }
}

impl GuardStore for Switch {
    fn check<'a>(&'a self, request: &'a CheckRequest) -> StoreFuture<'a, CheckReply> {
        self.gate(self.inner.check(request))
    }
    fn raise<'a>(&'a self, batch: &'a RaiseBatch) -> StoreFuture<'a, RaiseReply> {
        self.gate(self.inner.raise(batch))
    }
    fn revoke_subject<'a>(&'a self, subject: &'a StoreId, ttl: Duration) -> StoreFuture<'a, ()> {
        self.gate(self.inner.revoke_subject(subject, ttl))
    }
    fn revoke_scope<'a>(&'a self, scope: &'a StoreId, ttl: Duration) -> StoreFuture<'a, ()> {
        self.gate(self.inner.revoke_scope(scope, ttl))
    }
}

/// An endpoint ("worker") over `store`.
pub fn worker(r: &Recovery, store: Arc<dyn GuardStore>, policy: GuardPolicy) -> (Endpoint, Guard) {
    let guard = Guard::builder(r, store)
        .policy(policy)
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    (Endpoint::new(r.clone()).with_guard(guard.clone()), guard)
}

/// What a tab holds: its salt and the newest token per key.
#[derive(Default, Clone)]
pub struct Tab {
    pub salt: Option<Salt>,
    pub entries: std::collections::BTreeMap<StateKey, (u64, String)>,
}

impl Tab {
    pub fn message(&self) -> Option<String> {
        let salt = self.salt.as_ref()?;
        Some(reconnect_message(
            salt,
            self.entries.values().map(|(_, t)| t.as_str()),
        ))
    }

    /// Takes in what the endpoint tells the client (salt first; then state updates).
    pub fn absorb(&mut self, rec: &Recovered) {
        if let Some(m) = rec.salt_message() {
            if self.salt.as_ref() != Some(m.salt()) {
                self.entries.clear();
                self.salt = Some(m.salt().clone());
            }
        }
        for m in rec.messages() {
            if let state_recovery::protocol::ServerMessage::State(u) = m {
                self.take(&u);
            }
        }
    }

    pub fn take(&mut self, u: &state_recovery::StateUpdate) {
        if self
            .entries
            .get(&u.key())
            .map_or(true, |(r, _)| *r <= u.rev())
        {
            self.entries
                .insert(u.key(), (u.rev(), u.token().as_str().to_owned()));
        }
    }

    pub async fn connect(&mut self, e: &Endpoint, subject: Option<&str>) -> Recovered {
        let msg = self.message();
        let rec = e
            .recover_guarded(msg.as_deref().map(str::as_bytes), subject)
            .await;
        self.absorb(&rec);
        rec
    }

    /// Seals `value` for `key` at the context's next revision and keeps the entry.
    pub fn seal(&mut self, rec: &Recovered, key: StateKey, value: u64) -> u64 {
        let rev = rec.context().next_revision(key);
        let u = rec.context().seal(key, rev, 1, &value).unwrap();
        self.take(&u);
        rev
    }
}

pub fn reasons(rec: &Recovered) -> Vec<Reason> {
    rec.rejected().iter().map(|r| r.reason).collect()
}

pub fn keys(r: &Recovery) -> (StateKey, StateKey) {
    (
        r.state_key(&state_key!("counter")),
        r.state_key(&state_key!("draft")),
    )
}

#[tokio::test]
async fn logout_revokes_that_subject_on_every_worker_and_no_other() {
    let r = recovery();
    let (k1, k2) = keys(&r);
    let store: Arc<dyn GuardStore> = Arc::new(InProcessStore::new());
    let (a, guard_a) = worker(&r, store.clone(), GuardPolicy::FailClosed);
    let (b, guard_b) = worker(&r, store, GuardPolicy::FailClosed);

    let (mut alice, mut bob) = (Tab::default(), Tab::default());
    for (tab, who) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let rec = tab.connect(&a, Some(who)).await;
        assert_eq!(rec.guard_verdict(), GuardVerdict::Checked);
        tab.seal(&rec, k1, 1);
        tab.seal(&rec, k2, 2);
    }
    // Both restore on the other worker.
    let rec = alice.clone().connect(&b, Some("alice")).await;
    assert_eq!((rec.restored().len(), reasons(&rec)), (2, vec![]));

    guard_a.revoke_subject("alice").await.unwrap();

    let old_salt = alice.salt.clone().unwrap();
    let rec = alice.connect(&b, Some("alice")).await;
    assert_eq!(rec.guard_verdict(), GuardVerdict::Revoked);
    assert_eq!(reasons(&rec), [Reason::Revoked, Reason::Revoked]);
    assert!(rec.restored().is_empty());
    let m = rec.recovered_message();
    assert_eq!((m.restored, m.rejected), (0, 2));
    // A fresh salt: the client drops its stash and starts over.
    assert!(rec.salt_message().is_some());
    assert!(alice.salt.as_ref() != Some(&old_salt) && alice.entries.is_empty());
    assert_eq!(guard_b.stats().revoked, 1);

    // Her new salt (registered at the new epoch) works on both workers.
    let rec = alice.connect(&a, Some("alice")).await;
    alice.seal(&rec, k1, 10);
    let rec = alice.clone().connect(&b, Some("alice")).await;
    assert_eq!(
        (rec.guard_verdict(), rec.restored().len()),
        (GuardVerdict::Checked, 1)
    );

    // Bob is untouched.
    let rec = bob.connect(&b, Some("bob")).await;
    assert_eq!((rec.restored().len(), reasons(&rec)), (2, vec![]));
}

#[tokio::test]
async fn a_salt_is_registered_when_it_is_handed_out() {
    // Without the registration in the check of the new-client path, the salt would be
    // registered at its first reconnect, after the logout, at the new epoch: and accepted.
    let r = recovery();
    let (k1, _) = keys(&r);
    let (a, guard) = worker(&r, Arc::new(InProcessStore::new()), GuardPolicy::FailClosed);
    let mut tab = Tab::default();
    let rec = tab.connect(&a, Some("carol")).await;
    assert!(rec.salt_message().is_some());
    tab.seal(&rec, k1, 1);
    // Nothing sealed, so no write-behind that could register it either.
    let mut empty = Tab::default();
    empty.connect(&a, Some("carol")).await;
    guard.revoke_subject("carol").await.unwrap();
    let rec = tab.connect(&a, Some("carol")).await;
    assert_eq!(reasons(&rec), [Reason::Revoked]);
    let rec = empty.connect(&a, Some("carol")).await;
    assert_eq!(rec.guard_verdict(), GuardVerdict::Revoked);
}

#[tokio::test]
async fn revoking_a_salt_refuses_that_client_only() {
    let r = recovery();
    let (k1, _) = keys(&r);
    let store: Arc<dyn GuardStore> = Arc::new(InProcessStore::new());
    let (a, guard) = worker(&r, store.clone(), GuardPolicy::FailClosed);
    let (b, _) = worker(&r, store, GuardPolicy::FailClosed);
    let (mut one, mut two) = (Tab::default(), Tab::default());
    for tab in [&mut one, &mut two] {
        let rec = tab.connect(&a, None).await;
        tab.seal(&rec, k1, 7);
    }
    guard
        .revoke_salt(one.salt.as_ref().unwrap(), None)
        .await
        .unwrap();
    let rec = one.connect(&b, None).await;
    assert_eq!(reasons(&rec), [Reason::Revoked]);
    let rec = two.connect(&b, None).await;
    assert_eq!((rec.restored().len(), reasons(&rec)), (1, vec![]));
}

/// A worker killed right after sealing an update the client never got (its socket reset)
/// must not leave a mark that refuses the entry the client still holds: that would lose the
/// state the crate exists to keep. The mark is written only after the mark delay, so a worker
/// that dies within it leaves none; one that lives past it does, and the replay is refused.
#[tokio::test]
async fn a_worker_killed_right_after_sealing_leaves_no_mark_that_refuses_the_client() {
    let r = recovery();
    let (k1, _) = keys(&r);
    let store: Arc<dyn GuardStore> = Arc::new(InProcessStore::new());
    let delayed = |store: Arc<dyn GuardStore>| {
        let guard = Guard::builder(&r, store)
            .mark_delay(Duration::from_millis(400))
            .build()
            .unwrap();
        (Endpoint::new(r.clone()).with_guard(guard.clone()), guard)
    };
    let mut tab = Tab::default();
    {
        let (a, _guard_a) = delayed(store.clone());
        let rec = tab.connect(&a, Some("erin")).await;
        tab.seal(&rec, k1, 1); // the client holds rev 1
        let lost = rec.context().next_revision(k1);
        rec.context().seal(k1, lost, 1, &"never delivered").unwrap();
        // Many flush intervals (25 ms), but less than the delay; then the worker is gone
        // with its queue (no flush: a SIGKILL runs no code).
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (b, guard_b) = delayed(store);
    let rec = tab.clone().connect(&b, Some("erin")).await;
    assert_eq!(reasons(&rec), vec![], "the client's rev 1 restores");
    assert!(rec.restored().raw(&k1).is_some());

    // A worker that lives past the delay writes its marks: then the replay is refused.
    let mut old = tab.clone();
    tab.seal(&rec, k1, 2);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let rec = old.connect(&b, Some("erin")).await;
    assert_eq!(reasons(&rec), vec![Reason::RolledBack]);
    assert_eq!(guard_b.stats().rolled_back, 1);
}

#[tokio::test]
async fn an_older_revision_is_rolled_back_on_another_worker() {
    let r = recovery();
    let (k1, k2) = keys(&r);
    let store: Arc<dyn GuardStore> = Arc::new(InProcessStore::new());
    let (a, guard_a) = worker(&r, store.clone(), GuardPolicy::FailClosed);
    let (b, guard_b) = worker(&r, store, GuardPolicy::FailClosed);
    let mut tab = Tab::default();
    let rec = tab.connect(&a, Some("dave")).await;
    tab.seal(&rec, k2, 1);
    tab.seal(&rec, k1, 1);
    let old = tab.clone(); // holds counter rev 1
    tab.seal(&rec, k1, 2);
    tab.seal(&rec, k1, 3); // counter rev 3
    guard_a.flush().await.unwrap();

    // The replay of rev 1 on worker B: refused, the draft still restored.
    let rec = old.clone().connect(&b, Some("dave")).await;
    assert_eq!(rec.guard_verdict(), GuardVerdict::Checked);
    let rejected = rec.rejected();
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        (
            rejected[0].reason,
            rejected[0].claimed_key,
            rejected[0].claimed_revision
        ),
        (Reason::RolledBack, Some(k1), Some(1))
    );
    assert!(rec.restored().raw(&k2).is_some() && rec.restored().raw(&k1).is_none());
    let m = rec.recovered_message();
    assert_eq!((m.restored, m.rejected), (1, 1), "counts stay honest");
    // ... and the next revision for the counter continues above the mark.
    assert_eq!(rec.context().next_revision(k1), 4);
    assert_eq!(guard_b.stats().rolled_back, 1);

    // The newest entry, or an equal revision, is fine.
    let rec = tab.clone().connect(&b, Some("dave")).await;
    assert_eq!((rec.restored().len(), reasons(&rec)), (2, vec![]));
}

#[tokio::test]
async fn revisions_continue_above_the_marks_of_keys_the_client_dropped() {
    let r = recovery();
    let (k1, k2) = keys(&r);
    let store: Arc<dyn GuardStore> = Arc::new(InProcessStore::new());
    let (a, guard_a) = worker(&r, store.clone(), GuardPolicy::FailClosed);
    let (b, guard_b) = worker(&r, store, GuardPolicy::FailClosed);
    let mut tab = Tab::default();
    let rec = tab.connect(&a, Some("erin")).await;
    for n in 0..5 {
        tab.seal(&rec, k1, n);
    }
    tab.seal(&rec, k2, 0);
    guard_a.flush().await.unwrap();

    // The client lost its counter entry (its own cap, storage); it reconnects without it.
    tab.entries.remove(&k1);
    let rec = tab.connect(&b, Some("erin")).await;
    assert_eq!(rec.restored().len(), 1);
    // Seeded with every mark of the scope, not only those of the entries it carried: without
    // that the app would seal rev 1, which the guard would refuse as rolled back next time.
    let rev = tab.seal(&rec, k1, 99);
    assert_eq!(rev, 6);
    guard_b.flush().await.unwrap();
    let rec = tab.connect(&a, Some("erin")).await;
    assert_eq!((rec.restored().len(), reasons(&rec)), (2, vec![]));
    assert_eq!(rec.get::<u64>(k1), Some(99));
}

#[tokio::test]
async fn fail_open_restores_without_the_guard_within_the_timeout() {
    let r = recovery();
    let (k1, _) = keys(&r);
    let store = Arc::new(Switch::default());
    let (e, guard) = worker(&r, store.clone(), GuardPolicy::FailOpen);
    let mut tab = Tab::default();
    let rec = tab.connect(&e, Some("fay")).await;
    tab.seal(&rec, k1, 1);
    let old = tab.clone();
    tab.seal(&rec, k1, 2);
    guard.flush().await.unwrap();
    guard.revoke_subject("fay").await.unwrap();

    for mode in [Switch::HANG, Switch::FAIL] {
        store.set(mode);
        let t0 = Instant::now();
        let rec = old.clone().connect(&e, Some("fay")).await;
        let took = t0.elapsed();
        assert!(took < Duration::from_millis(500), "{mode}: {took:?}");
        // Revoked and rolled back, but restored: that is what fail-open means.
        assert_eq!(
            rec.guard_verdict(),
            GuardVerdict::Unavailable(GuardPolicy::FailOpen)
        );
        assert_eq!((rec.restored().len(), reasons(&rec)), (1, vec![]));
        // Seals still queue their marks, for when the store is back.
        let before = guard.queued();
        rec.context().seal(k1, 5, 1, &5u64).unwrap();
        assert_eq!(guard.queued(), before + 1);
    }
    assert_eq!(guard.stats().failed_open, 2);
    // Back: the guard applies again.
    store.set(Switch::OK);
    let rec = old.clone().connect(&e, Some("fay")).await;
    assert_eq!(reasons(&rec), [Reason::Revoked]);
}

#[tokio::test]
async fn fail_closed_keeps_the_salt_restores_nothing_and_seals_nothing() {
    let r = recovery();
    let (k1, k2) = keys(&r);
    let store = Arc::new(Switch::default());
    let (e, guard) = worker(&r, store.clone(), GuardPolicy::FailClosed);
    let mut tab = Tab::default();
    let rec = tab.connect(&e, Some("gus")).await;
    tab.seal(&rec, k1, 1);
    tab.seal(&rec, k2, 2);
    let salt = tab.salt.clone().unwrap();

    for mode in [Switch::HANG, Switch::FAIL] {
        store.set(mode);
        // One forged entry too: it keeps its own reason.
        let mut msg: serde_json::Value = serde_json::from_str(&tab.message().unwrap()).unwrap();
        msg["entries"].as_array_mut().unwrap().push("AQJrMQ".into());
        let t0 = Instant::now();
        let rec = e
            .recover_guarded(Some(msg.to_string().as_bytes()), Some("gus"))
            .await;
        assert!(t0.elapsed() < Duration::from_millis(500));
        assert_eq!(
            rec.guard_verdict(),
            GuardVerdict::Unavailable(GuardPolicy::FailClosed)
        );
        let mut got = reasons(&rec);
        got.sort();
        assert_eq!(
            got,
            [
                Reason::Malformed,
                Reason::GuardUnavailable,
                Reason::GuardUnavailable
            ]
        );
        assert!(rec.restored().is_empty());
        // The client keeps its salt (no `salt` message) and so its stash ...
        assert!(rec.salt_message().is_none());
        assert!(*rec.context().salt() == salt);
        // ... and nothing is sealed over it.
        assert!(matches!(
            rec.context().seal(k1, 9, 1, &0u64),
            Err(SealError::GuardUnavailable)
        ));
        assert!(rec.pending().is_empty());
        let m = rec.recovered_message();
        assert_eq!((m.restored, m.rejected), (0, 3));
        // A new client still gets a salt, but nothing is sealed under it either.
        let fresh = e.recover_guarded(None, Some("gus")).await;
        assert!(fresh.salt_message().is_some());
        assert!(fresh.context().is_guard_blocked());
    }
    assert_eq!(guard.stats().failed_closed, 4);
    store.set(Switch::OK);
    let rec = tab.connect(&e, Some("gus")).await;
    assert_eq!((rec.restored().len(), reasons(&rec)), (2, vec![]));
}

#[tokio::test]
async fn the_sync_api_of_a_guarded_endpoint_never_restores_unguarded() {
    let r = recovery();
    let (k1, _) = keys(&r);
    // Even with fail-open: the synchronous API cannot consult the store at all.
    let (e, guard) = worker(&r, Arc::new(InProcessStore::new()), GuardPolicy::FailOpen);
    let mut tab = Tab::default();
    let rec = tab.connect(&e, Some("hal")).await;
    tab.seal(&rec, k1, 1);
    let msg = tab.message().unwrap();
    let rec = e.recover(Some(msg.as_bytes()), Some("hal"));
    assert_eq!(reasons(&rec), [Reason::GuardUnavailable]);
    assert!(rec.salt_message().is_none());
    assert!(rec.context().is_guard_blocked());
    let rec = e.recover_first(msg.as_bytes(), Some("hal")).unwrap();
    assert_eq!(reasons(&rec), [Reason::GuardUnavailable]);
    assert!(e.fresh_client(Some("hal")).context().is_guard_blocked());
    assert!(e
        .refused(Reason::Malformed, Some("hal"))
        .context()
        .is_guard_blocked());
    assert_eq!(guard.stats().failed_closed, 4);
    // Without a guard, the synchronous API is what it always was.
    let plain = Endpoint::new(r.clone());
    assert_eq!(
        plain
            .recover(Some(msg.as_bytes()), Some("hal"))
            .restored()
            .len(),
        1
    );
}

/// A store whose writes never finish.
struct StuckWrites(InProcessStore);

impl GuardStore for StuckWrites {
    fn check<'a>(&'a self, request: &'a CheckRequest) -> StoreFuture<'a, CheckReply> {
        self.0.check(request)
    }
    fn raise<'a>(&'a self, _: &'a RaiseBatch) -> StoreFuture<'a, RaiseReply> {
        Box::pin(std::future::pending())
    }
    fn revoke_subject<'a>(&'a self, s: &'a StoreId, ttl: Duration) -> StoreFuture<'a, ()> {
        self.0.revoke_subject(s, ttl)
    }
    fn revoke_scope<'a>(&'a self, s: &'a StoreId, ttl: Duration) -> StoreFuture<'a, ()> {
        self.0.revoke_scope(s, ttl)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_behind_never_blocks_a_seal_and_stays_bounded() {
    let r = recovery_with(Limits::default().with_max_entries(4096));
    let guard = Guard::builder(&r, Arc::new(StuckWrites(InProcessStore::new())))
        .queue_capacity(100)
        .flush_batch(10)
        .flush_interval(Duration::from_millis(1))
        .mark_delay(Duration::ZERO)
        .write_timeout(Duration::from_millis(20))
        .build()
        .unwrap();
    let e = Endpoint::new(r.clone()).with_guard(guard.clone());
    let rec = e.recover_guarded(None, None).await;
    let ctx = rec.context();
    let t0 = Instant::now();
    for i in 0..2000u32 {
        let key = r.state_key(&state_key!("item").with_instance(i.to_string()));
        ctx.seal(key, 1, 1, &i).unwrap();
    }
    let took = t0.elapsed();
    // 2000 seals with a store that never answers a write: nothing waited on it.
    assert!(took < Duration::from_secs(2), "{took:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = guard.stats();
    assert!(guard.queued() <= 100, "{}", guard.queued());
    assert!(stats.marks_dropped >= 1900, "{stats:?}");
    assert!(stats.write_failures >= 1, "{stats:?}");
    assert_eq!(stats.marks_written, 0);
    // A flush is bounded by the write timeout too.
    let t0 = Instant::now();
    assert!(matches!(guard.flush().await, Err(StoreError::Timeout(_))));
    assert!(t0.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn marks_per_scope_are_bounded_and_a_key_past_the_cap_is_not_refused() {
    let r = recovery_with(Limits::default().with_max_entries(4));
    let store = Arc::new(InProcessStore::new());
    let guard = Guard::builder(&r, store.clone())
        .max_marks(4)
        .build()
        .unwrap();
    assert!(Guard::builder(&r, store.clone())
        .max_marks(3)
        .build()
        .is_err());
    let e = Endpoint::new(r.clone()).with_guard(guard.clone());
    let key = |i: u32| r.state_key(&state_key!("item").with_instance(i.to_string()));
    let mut tab = Tab::default();
    // Two connections of one client, four keys each (the client drops the first four).
    let rec = tab.connect(&e, Some("ivy")).await;
    for i in 0..4 {
        tab.seal(&rec, key(i), 1);
    }
    guard.flush().await.unwrap();
    tab.entries.clear();
    let rec = tab.connect(&e, Some("ivy")).await;
    for i in 4..8 {
        tab.seal(&rec, key(i), 1);
        tab.seal(&rec, key(i), 2);
    }
    guard.flush().await.unwrap();
    assert_eq!(guard.stats().marks_refused, 4);
    let ids = store.scopes();
    assert!(ids >= 1);
    // Keys past the cap are not guarded, and not refused by mistake.
    let rec = tab.connect(&e, Some("ivy")).await;
    assert_eq!((rec.restored().len(), reasons(&rec)), (4, vec![]));
}

#[test]
fn settings_are_checked() {
    let r = recovery();
    let store = || -> Arc<dyn GuardStore> { Arc::new(InProcessStore::new()) };
    let short = Duration::from_secs(r.otp().max_age_secs());
    assert!(Guard::builder(&r, store())
        .record_ttl(short)
        .build()
        .is_err());
    assert!(Guard::builder(&r, store())
        .timeout(Duration::ZERO)
        .build()
        .is_err());
    assert!(Guard::builder(&r, store())
        .flush_interval(Duration::from_secs(11))
        .build()
        .is_err());
    assert!(Guard::builder(&r, store())
        .queue_capacity(0)
        .build()
        .is_err());
    let g = Guard::builder(&r, store())
        .id_key(&Pepper::generate())
        .build()
        .unwrap();
    assert_eq!(
        (g.policy(), g.timeout()),
        (GuardPolicy::FailClosed, Guard::DEFAULT_TIMEOUT)
    );
    assert!(!format!("{g:?}").is_empty());
}

#[tokio::test]
async fn the_store_sees_hashed_ids_only() {
    /// Records every id the store is given.
    #[derive(Default)]
    struct Spy {
        inner: InProcessStore,
        seen: std::sync::Mutex<Vec<StoreId>>,
    }
    impl GuardStore for Spy {
        fn check<'a>(&'a self, q: &'a CheckRequest) -> StoreFuture<'a, CheckReply> {
            let mut seen = self.seen.lock().unwrap();
            seen.extend(q.subject.iter().chain(q.presented.iter()).chain([&q.fresh]));
            drop(seen);
            self.inner.check(q)
        }
        fn raise<'a>(&'a self, b: &'a RaiseBatch) -> StoreFuture<'a, RaiseReply> {
            self.inner.raise(b)
        }
        fn revoke_subject<'a>(&'a self, s: &'a StoreId, t: Duration) -> StoreFuture<'a, ()> {
            self.seen.lock().unwrap().push(*s);
            self.inner.revoke_subject(s, t)
        }
        fn revoke_scope<'a>(&'a self, s: &'a StoreId, t: Duration) -> StoreFuture<'a, ()> {
            self.inner.revoke_scope(s, t)
        }
    }
    let r = recovery();
    let spy = Arc::new(Spy::default());
    let (e, guard) = worker(&r, spy.clone(), GuardPolicy::FailClosed);
    let mut tab = Tab::default();
    tab.connect(&e, Some("jo")).await;
    tab.connect(&e, Some("jo")).await;
    guard.revoke_subject("jo").await.unwrap();
    use base64::Engine as _;
    let salt = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tab.salt.unwrap().encode())
        .unwrap();
    let seen = spy.seen.lock().unwrap();
    // subject, fresh | subject, presented, fresh | subject
    assert_eq!(seen.len(), 6);
    for id in seen.iter() {
        let hex = id.to_string();
        assert_eq!(hex.len(), 32);
        assert!(
            id.as_bytes()[..] != salt[..] && !hex.contains("6a6f"),
            "{hex}"
        );
    }
    // The same subject, the same id; the presented scope is the fresh one of before.
    assert_eq!((seen[0], seen[2], seen[5]), (seen[0], seen[0], seen[0]));
    assert_eq!(seen[1], seen[3]);
    assert_ne!(seen[3], seen[4]);
}

/// The layer uses the guarded path on both transports.
#[cfg(feature = "axum")]
mod layer {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use axum::{Json, Router};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use futures_util::{SinkExt as _, StreamExt as _};
    use http_body_util::BodyExt as _;
    use serde_json::{json, Value};
    use state_recovery::{RecoverySession, RecoverySocket, StateRecoveryLayer};
    use tokio_tungstenite::tungstenite::Message;
    use tower::ServiceExt as _;

    fn report(r: &Recovered) -> Value {
        json!({
            "verdict": format!("{:?}", r.guard_verdict()),
            "restored": r.restored().len(),
            "reasons": reasons(r).iter().map(|r| r.code()).collect::<Vec<_>>(),
            "salt_issued": r.salt_message().is_some(),
        })
    }

    fn app(r: &Recovery, guard: &Guard) -> Router {
        Router::new()
            .route("/page", get(|r: Recovered| async move { Json(report(&r)) }))
            .route(
                "/ws",
                get(|ws: RecoverySocket| async move {
                    ws.on_upgrade(|mut session: RecoverySession| async move {
                        let hello = report(session.recovered()).to_string();
                        let _ = session.ready().await;
                        let _ = session.socket_mut().send(hello.into()).await;
                    })
                }),
            )
            .layer(
                StateRecoveryLayer::new(r.clone())
                    .with_guard(guard.clone())
                    .with_subject(|_| Some("kim".to_owned())),
            )
    }

    #[tokio::test]
    async fn the_layer_guards_http_and_websocket_reconnects() {
        let r = recovery();
        let (k1, _) = keys(&r);
        let store: Arc<dyn GuardStore> = Arc::new(InProcessStore::new());
        let (e, guard) = worker(&r, store, GuardPolicy::FailClosed);
        let mut tab = Tab::default();
        let rec = tab.connect(&e, Some("kim")).await;
        tab.seal(&rec, k1, 1);
        let old = tab.clone();
        tab.seal(&rec, k1, 2);
        guard.flush().await.unwrap();
        let app = app(&r, &guard);

        let http = |tab: &Tab| {
            let header = URL_SAFE_NO_PAD.encode(tab.message().unwrap());
            let req = Request::get("/page")
                .header("State-Recovery", header)
                .body(Body::empty())
                .unwrap();
            let app = app.clone();
            async move {
                let res = app.oneshot(req).await.unwrap();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                serde_json::from_slice::<Value>(&body).unwrap()
            }
        };
        assert_eq!(http(&tab).await["restored"], 1);
        let v = http(&old).await;
        assert_eq!(
            (v["verdict"].as_str(), &v["reasons"]),
            (Some("Checked"), &json!(["rolled-back"]))
        );

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/ws", listener.local_addr().unwrap());
        let served = app.clone();
        tokio::spawn(async move { axum::serve(listener, served).await.unwrap() });
        let ws = |tab: &Tab| {
            let (url, first) = (url.clone(), tab.message().unwrap());
            async move {
                let (mut c, _) = tokio_tungstenite::connect_async(url).await.unwrap();
                c.send(Message::text(first)).await.unwrap();
                loop {
                    let m = tokio::time::timeout(Duration::from_secs(10), c.next())
                        .await
                        .unwrap()
                        .unwrap()
                        .unwrap();
                    let v: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
                    if v.get("verdict").is_some() {
                        return v;
                    }
                }
            }
        };
        assert_eq!(ws(&old).await["reasons"], json!(["rolled-back"]));
        guard.revoke_subject("kim").await.unwrap();
        let v = ws(&tab).await;
        assert_eq!(
            (v["verdict"].as_str(), &v["reasons"]),
            (Some("Revoked"), &json!(["revoked"]))
        );
        assert_eq!(v["salt_issued"], true);
        assert_eq!(http(&tab).await["reasons"], json!(["revoked"]));
    }
}
