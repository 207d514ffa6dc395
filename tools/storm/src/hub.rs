//! What the tabs report, in one place the coordinator reads: where each tab is, when it was
//! restored and how, message round trips, events in flight when a connection closed (and
//! whether they were applied after all), events applied twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One tab as the coordinator sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct TabView {
    /// The worker of the current connection (its `worker` message: `w1` → 1).
    pub(crate) worker: Option<u8>,
    /// Restored on the current connection, and every component touched once (warm).
    pub(crate) ready: bool,
    /// Connections opened.
    pub(crate) connections: u32,
}

/// A reconnect that completed: `recovered` and every component's first render, checked.
#[derive(Debug, Clone)]
pub(crate) struct Restore {
    pub(crate) tab: usize,
    pub(crate) at: Instant,
    /// Whether anything the tab held was lost (`None`: everything came back).
    pub(crate) lost: Option<String>,
    /// The worker it landed on.
    pub(crate) worker: Option<u8>,
    /// Where the time went since the last connection closed (none for a first connection).
    pub(crate) outage: Option<Outage>,
    /// The last handshake: started, and open (the JS client's `onopen`).
    pub(crate) connect_started: Instant,
    pub(crate) opened: Instant,
}

/// From a close to the next connection that opened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outage {
    /// When the tab saw its connection close.
    pub(crate) closed: Instant,
    /// The backoff delays waited, in all.
    pub(crate) backoff: Duration,
    /// Handshakes tried (the one that opened included).
    pub(crate) attempts: u32,
}

/// An application message's round trip: event sent → its component's render.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) tab: u32,
    pub(crate) sent: Instant,
    pub(crate) rtt: Duration,
}

/// A connection that ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Closed {
    pub(crate) tab: usize,
    pub(crate) at: Instant,
    /// An event was sent on it and not acknowledged (no `batch`, or for an unnumbered event
    /// no `state` message, came back): see [`Record::in_flight`].
    pub(crate) in_flight: bool,
    /// The close code (1006 when the socket died without a close frame).
    pub(crate) code: u16,
}

/// An event sent and not acknowledged when its connection closed (recorded at the first such
/// close). A numbered one stays in the stash and is resent after the next `recovered`; it is
/// lost only if it is never applied.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InFlight {
    /// The tab that sent it.
    pub(crate) tab: usize,
    /// Its `$seq` (`None`: sent unnumbered, never resent).
    pub(crate) seq: Option<u64>,
    /// When the connection closed.
    pub(crate) closed: Instant,
    /// When its answer came: a batch with its effects (applied, once), or an empty one (the
    /// restored state had it already).
    pub(crate) applied: Option<Instant>,
    /// The answer said it was applied before (an empty batch, or `recovered`'s `applied`),
    /// not with its effects.
    pub(crate) already: bool,
}

/// Everything recorded.
#[derive(Debug, Default)]
pub(crate) struct Record {
    pub(crate) tabs: Vec<TabView>,
    pub(crate) restores: Vec<Restore>,
    pub(crate) samples: Vec<Sample>,
    pub(crate) closed: Vec<Closed>,
    /// Renders that did not show what the tab expected in the middle of a connection.
    pub(crate) diverged: Vec<String>,
    /// Entries the stash dropped (`onDropped`), by reason.
    pub(crate) dropped: std::collections::BTreeMap<&'static str, u64>,
    /// Handshakes that failed: when, and how (`http-502`, `io-ConnectionReset`, `timeout`, ...).
    pub(crate) connect_failures: Vec<(Instant, String)>,
    /// Events that got no render within the ack timeout.
    pub(crate) stuck: u64,
    /// Events in flight at a close, in order of the closes.
    pub(crate) in_flight: Vec<InFlight>,
    /// Events applied twice: a batch with messages for a `$seq` at or below one already
    /// applied (tab, seq, when).
    pub(crate) duplicated: Vec<(usize, u64, Instant)>,
    /// Batches the stash refused whole (malformed).
    pub(crate) malformed_batches: u64,
    /// How late this process's timer woke up (a 10 ms sleep, in a loop): its own lag.
    pub(crate) lag: Vec<(Instant, Duration)>,
}

/// The shared record and the switches the coordinator turns.
#[derive(Debug)]
pub(crate) struct Hub {
    record: Mutex<Record>,
    /// Tabs send events while this is on.
    events: AtomicBool,
}

impl Hub {
    pub(crate) fn new(tabs: usize) -> Self {
        Self {
            record: Mutex::new(Record {
                tabs: vec![TabView::default(); tabs],
                ..Record::default()
            }),
            events: AtomicBool::new(true),
        }
    }

    /// The record (a poisoned lock still holds what was recorded).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Record> {
        self.record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn events_on(&self) -> bool {
        self.events.load(Ordering::Relaxed)
    }

    pub(crate) fn set_events(&self, on: bool) {
        self.events.store(on, Ordering::Relaxed);
    }

    /// Runs `f` on tab `tab`'s view.
    pub(crate) fn tab(&self, tab: usize, f: impl FnOnce(&mut TabView)) {
        if let Some(v) = self.lock().tabs.get_mut(tab) {
            f(v);
        }
    }
}
