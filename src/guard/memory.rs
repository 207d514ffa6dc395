//! The in-process store: one worker's memory. The default for a single worker and for tests;
//! share one `Arc<InProcessStore>` between guards to model a cluster in a test.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::store::{
    CheckReply, CheckRequest, GuardStore, RaiseBatch, RaiseReply, ScopeStatus, StoreFuture, StoreId,
};
use crate::key::StateKey;

/// How many writes between two sweeps of expired records.
const SWEEP_EVERY: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    /// Registered at this subject epoch (0 for a scope without a subject).
    Epoch(u64),
    /// Revoked ([`GuardStore::revoke_scope`]).
    Tombstone,
}

#[derive(Debug)]
struct Expiring<T> {
    value: T,
    until: Instant,
}

#[derive(Debug, Default)]
struct State {
    epochs: HashMap<StoreId, Expiring<u64>>,
    records: HashMap<StoreId, Expiring<Record>>,
    marks: HashMap<StoreId, Expiring<HashMap<StateKey, u64>>>,
    writes: u64,
}

fn live<'m, T>(
    map: &'m HashMap<StoreId, Expiring<T>>,
    id: &StoreId,
    now: Instant,
) -> Option<&'m T> {
    map.get(id).filter(|e| e.until > now).map(|e| &e.value)
}

fn until(now: Instant, ttl: Duration) -> Instant {
    now.checked_add(ttl).unwrap_or(now)
}

impl State {
    fn epoch(&self, subject: Option<&StoreId>, now: Instant) -> u64 {
        subject
            .and_then(|s| live(&self.epochs, s, now))
            .copied()
            .unwrap_or(0)
    }

    fn renew_epoch(&mut self, subject: Option<&StoreId>, now: Instant, ttl: Duration) {
        if let Some(e) = subject.and_then(|s| self.epochs.get_mut(s)) {
            if e.until > now {
                e.until = until(now, ttl);
            }
        }
    }

    /// The scope's record (renewed), registering it at `epoch` when it has none; `true` when
    /// it was registered now.
    fn record_or_register(
        &mut self,
        scope: StoreId,
        epoch: u64,
        now: Instant,
        ttl: Duration,
    ) -> (Record, bool) {
        let until = until(now, ttl);
        match self.records.get_mut(&scope) {
            Some(slot) if slot.until > now => {
                slot.until = until;
                (slot.value, false)
            }
            _ => {
                let value = Record::Epoch(epoch);
                self.records.insert(scope, Expiring { value, until });
                (value, true)
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        self.writes = self.writes.wrapping_add(1);
        if self.writes % SWEEP_EVERY == 0 {
            self.epochs.retain(|_, e| e.until > now);
            self.records.retain(|_, e| e.until > now);
            self.marks.retain(|_, e| e.until > now);
        }
    }
}

/// The guard's store in this process's memory: revocation epochs, scope records and
/// high-water marks behind one mutex, each with a time to live (expired ones are swept every
/// few thousand writes). Only workers that share the same instance share revocations and
/// marks: for a cluster, use [`RedisStore`](super::RedisStore).
#[derive(Debug, Default)]
pub struct InProcessStore {
    state: Mutex<State>,
}

impl InProcessStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update leaves the maps consistent, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many scopes have a record, expired or not (for tests and metrics).
    #[must_use]
    pub fn scopes(&self) -> usize {
        self.state().records.len()
    }

    /// How many marks the scope holds (for tests and metrics).
    #[must_use]
    pub fn marks_of(&self, scope: &StoreId) -> usize {
        live(&self.state().marks, scope, Instant::now()).map_or(0, HashMap::len)
    }

    fn check_now(&self, r: &CheckRequest) -> CheckReply {
        let now = Instant::now();
        let mut s = self.state();
        let epoch = s.epoch(r.subject.as_ref(), now);
        s.renew_epoch(r.subject.as_ref(), now, r.ttl);
        let mut status = ScopeStatus::Fresh;
        let mut marks = Vec::new();
        if let Some(scope) = r.presented {
            let (record, registered) = s.record_or_register(scope, epoch, now, r.ttl);
            status = match record {
                Record::Epoch(e) if e == epoch && registered => ScopeStatus::Registered,
                Record::Epoch(e) if e == epoch => ScopeStatus::Known,
                _ => ScopeStatus::Revoked,
            };
            if status != ScopeStatus::Revoked {
                if let Some(m) = s.marks.get_mut(&scope).filter(|m| m.until > now) {
                    m.until = until(now, r.ttl);
                    marks = m
                        .value
                        .iter()
                        .take(r.max_marks)
                        .map(|(k, v)| (*k, *v))
                        .collect();
                }
            }
        }
        if matches!(status, ScopeStatus::Fresh | ScopeStatus::Revoked) {
            s.record_or_register(r.fresh, epoch, now, r.ttl);
        }
        s.sweep(now);
        CheckReply::new(status, marks)
    }

    fn raise_now(&self, b: &RaiseBatch) -> RaiseReply {
        let now = Instant::now();
        let mut s = self.state();
        let mut refused = 0u64;
        for scope in &b.scopes {
            let epoch = s.epoch(scope.subject.as_ref(), now);
            s.renew_epoch(scope.subject.as_ref(), now, b.ttl);
            s.record_or_register(scope.scope, epoch, now, b.ttl);
            let entry = s.marks.entry(scope.scope).or_insert_with(|| Expiring {
                value: HashMap::new(),
                until: now,
            });
            if entry.until <= now {
                entry.value.clear();
            }
            entry.until = until(now, b.ttl);
            for (key, rev) in &scope.marks {
                let len = entry.value.len();
                match entry.value.get_mut(key) {
                    Some(m) => *m = (*m).max(*rev),
                    None if len < b.max_marks => {
                        entry.value.insert(*key, *rev);
                    }
                    None => refused = refused.saturating_add(1),
                }
            }
        }
        s.sweep(now);
        RaiseReply::new(refused)
    }
}

impl GuardStore for InProcessStore {
    fn check<'a>(&'a self, request: &'a CheckRequest) -> StoreFuture<'a, CheckReply> {
        let reply = self.check_now(request);
        Box::pin(std::future::ready(Ok(reply)))
    }

    fn raise<'a>(&'a self, batch: &'a RaiseBatch) -> StoreFuture<'a, RaiseReply> {
        let reply = self.raise_now(batch);
        Box::pin(std::future::ready(Ok(reply)))
    }

    fn revoke_subject<'a>(&'a self, subject: &'a StoreId, ttl: Duration) -> StoreFuture<'a, ()> {
        let now = Instant::now();
        let mut s = self.state();
        let next = s.epoch(Some(subject), now).saturating_add(1);
        s.epochs.insert(
            *subject,
            Expiring {
                value: next,
                until: until(now, ttl),
            },
        );
        s.sweep(now);
        Box::pin(std::future::ready(Ok(())))
    }

    fn revoke_scope<'a>(&'a self, scope: &'a StoreId, ttl: Duration) -> StoreFuture<'a, ()> {
        let now = Instant::now();
        let mut s = self.state();
        s.records.insert(
            *scope,
            Expiring {
                value: Record::Tombstone,
                until: until(now, ttl),
            },
        );
        s.marks.remove(scope);
        s.sweep(now);
        Box::pin(std::future::ready(Ok(())))
    }
}
