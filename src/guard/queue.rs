//! The write-behind of high-water marks: seals push onto a bounded in-memory queue (never
//! awaiting anything); one background task per guard writes the queue in batches.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::store::{GuardStore, RaiseBatch, ScopeMarks, StoreError, StoreId};
use super::Stats;
use crate::key::StateKey;

/// The longest wait between two attempts while the store keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// One sealed revision to raise a mark to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Raise {
    pub(crate) scope: StoreId,
    pub(crate) subject: Option<StoreId>,
    pub(crate) key: StateKey,
    pub(crate) rev: u64,
    /// When it may be written: its seal plus the mark delay (see [`WriteSettings::delay`]).
    pub(crate) due: tokio::time::Instant,
}

/// How the writer batches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteSettings {
    pub(crate) ttl: Duration,
    pub(crate) max_marks: usize,
    pub(crate) interval: Duration,
    pub(crate) batch: usize,
    pub(crate) capacity: usize,
    pub(crate) write_timeout: Duration,
    /// How long after its seal a mark is written at the earliest: an update that never
    /// reached the client because its worker died within that time leaves no mark, so the
    /// client's previous entry still restores (see `GuardBuilder::mark_delay`).
    pub(crate) delay: Duration,
}

#[derive(Default)]
struct Pending {
    items: VecDeque<Raise>,
    worker: Option<JoinHandle<()>>,
}

/// The queue and its writer, shared by a guard and every context it made.
pub(crate) struct Writer {
    store: Arc<dyn GuardStore>,
    settings: WriteSettings,
    pending: Mutex<Pending>,
    /// Wakes the background task early (a full batch, or a flush).
    wake: Arc<Notify>,
    /// Held while a batch is being written, so `flush` waits for one in flight.
    writing: tokio::sync::Mutex<()>,
    stats: Arc<Stats>,
}

impl Writer {
    pub(crate) fn new(
        store: Arc<dyn GuardStore>,
        settings: WriteSettings,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            store,
            settings,
            pending: Mutex::new(Pending::default()),
            wake: Arc::new(Notify::new()),
            writing: tokio::sync::Mutex::new(()),
            stats,
        }
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        // Every update leaves the queue consistent, so a poisoned lock is usable.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a raise: a lock, a push, and at most a wake-up; never waits for the store. A
    /// full queue drops its oldest raise (counted in `marks_dropped`).
    pub(crate) fn push(self: &Arc<Self>, mut raise: Raise) {
        let now = tokio::time::Instant::now();
        raise.due = now.checked_add(self.settings.delay).unwrap_or(now);
        let mut p = self.pending();
        if p.items.len() >= self.settings.capacity {
            p.items.pop_front();
            self.stats.marks_dropped.fetch_add(1, Ordering::Relaxed);
        }
        p.items.push_back(raise);
        let wake = p.items.len() >= self.settings.batch;
        self.ensure_worker(&mut p);
        drop(p);
        if wake {
            self.wake.notify_one();
        }
    }

    /// How many raises wait to be written.
    pub(crate) fn queued(&self) -> usize {
        self.pending().items.len()
    }

    /// Starts the background task on the current tokio runtime when none runs (the first
    /// push, or after the runtime that ran it was shut down). Outside a runtime nothing is
    /// started: the queue waits for [`flush`](Self::flush) or a push from inside one.
    fn ensure_worker(self: &Arc<Self>, p: &mut Pending) {
        if p.worker.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let me = Arc::downgrade(self);
            let wake = Arc::clone(&self.wake);
            p.worker = Some(rt.spawn(run(me, wake, self.settings.interval)));
        }
    }

    /// Takes up to one batch off the queue (only raises that are due, unless `all`) and
    /// writes it (bounded by the write timeout). On failure the batch goes back to the front
    /// of the queue (the oldest raises are dropped first if that overflows it). Returns how
    /// many raises were written.
    pub(crate) async fn write_once(&self, all: bool) -> Result<usize, StoreError> {
        let _writing = self.writing.lock().await;
        let taken: Vec<Raise> = {
            let mut p = self.pending();
            let now = tokio::time::Instant::now();
            // Pushed in order, with one delay: the due ones are a prefix.
            let due = if all {
                p.items.len()
            } else {
                p.items.iter().take_while(|r| r.due <= now).count()
            };
            let n = due.min(self.settings.batch.saturating_mul(4));
            p.items.drain(..n).collect()
        };
        if taken.is_empty() {
            return Ok(0);
        }
        let count = taken.len();
        let batch = coalesce(&taken, &self.settings);
        let written = tokio::time::timeout(self.settings.write_timeout, self.store.raise(&batch))
            .await
            .unwrap_or(Err(StoreError::Timeout(self.settings.write_timeout)));
        match written {
            Ok(reply) => {
                let n = u64::try_from(count).unwrap_or(u64::MAX);
                self.stats.marks_written.fetch_add(n, Ordering::Relaxed);
                self.stats
                    .marks_refused
                    .fetch_add(reply.refused, Ordering::Relaxed);
                if reply.refused > 0 {
                    tracing::warn!(
                        target: "state_recovery",
                        refused = reply.refused,
                        max = self.settings.max_marks,
                        "guard: marks for new state keys refused: their scope holds the most marks"
                    );
                }
                Ok(count)
            }
            Err(e) => {
                self.stats.write_failures.fetch_add(1, Ordering::Relaxed);
                self.requeue(&batch);
                Err(e)
            }
        }
    }

    /// Puts a batch that could not be written back in front of the queue.
    fn requeue(&self, batch: &RaiseBatch) {
        let mut p = self.pending();
        // Due already: it was taken because it was.
        let due = tokio::time::Instant::now();
        for scope in batch.scopes.iter().rev() {
            for (key, rev) in scope.marks.iter().rev() {
                p.items.push_front(Raise {
                    scope: scope.scope,
                    subject: scope.subject,
                    key: *key,
                    rev: *rev,
                    due,
                });
            }
        }
        while p.items.len() > self.settings.capacity {
            p.items.pop_front();
            self.stats.marks_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes everything queued now (in batches), due or not, waiting for a batch in flight
    /// first: for a worker that stops gracefully (its sessions were closed after their last
    /// updates were sent).
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        // Bounded: at most the batches the queue can hold, plus the one in flight.
        let rounds = self
            .settings
            .capacity
            .checked_div(self.settings.batch)
            .unwrap_or(0)
            .saturating_add(2);
        for _ in 0..rounds {
            if self.write_once(true).await? == 0 {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// One scope per entry of the batch, each state key at its highest revision.
fn coalesce(taken: &[Raise], settings: &WriteSettings) -> RaiseBatch {
    type Scopes = BTreeMap<StoreId, (Option<StoreId>, BTreeMap<StateKey, u64>)>;
    let mut scopes: Scopes = BTreeMap::new();
    for r in taken {
        let (_, marks) = scopes
            .entry(r.scope)
            .or_insert((r.subject, BTreeMap::new()));
        let m = marks.entry(r.key).or_insert(r.rev);
        *m = (*m).max(r.rev);
    }
    RaiseBatch {
        scopes: scopes
            .into_iter()
            .map(|(scope, (subject, marks))| ScopeMarks {
                scope,
                subject,
                marks: marks.into_iter().collect(),
            })
            .collect(),
        ttl: settings.ttl,
        max_marks: settings.max_marks,
    }
}

/// The background task: every `interval` (or at once when a batch is full), writes what is
/// queued; backs off while the store fails; ends when the guard and every context it made
/// are gone.
async fn run(writer: Weak<Writer>, wake: Arc<Notify>, interval: Duration) {
    let mut failures: u32 = 0;
    loop {
        let delay = if failures == 0 {
            interval
        } else {
            interval
                .saturating_mul(2u32.saturating_pow(failures.min(16)))
                .min(MAX_BACKOFF)
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = wake.notified(), if failures == 0 => {}
        }
        let Some(w) = writer.upgrade() else { return };
        loop {
            match w.write_once(false).await {
                Ok(n) => {
                    if failures > 0 {
                        tracing::info!(
                            target: "state_recovery",
                            failures,
                            "guard: high-water marks written again"
                        );
                        failures = 0;
                    }
                    // A full batch: there may be more right behind it.
                    if n < w.settings.batch.saturating_mul(4) {
                        break;
                    }
                }
                Err(e) => {
                    if failures == 0 {
                        tracing::warn!(
                            target: "state_recovery",
                            error = %e,
                            queued = w.queued(),
                            "guard: high-water marks not written; retrying (seals go on)"
                        );
                    }
                    failures = failures.saturating_add(1);
                    break;
                }
            }
        }
    }
}
