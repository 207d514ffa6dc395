//! Graceful drain: a worker that is being stopped tells every client to reconnect elsewhere
//! now, and waits (up to a deadline) for their sockets to close.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// The WebSocket close code a draining worker closes every session with: 1012, "Service
/// Restart" (RFC 6455 registry). The JS client reconnects at once on it (a small jitter, no
/// backoff), to another worker.
pub const DRAIN_CLOSE_CODE: u16 = 1012;

/// The close reason sent with [`DRAIN_CLOSE_CODE`].
pub const DRAIN_CLOSE_REASON: &str = "drain";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct State {
    draining: bool,
    sessions: usize,
}

/// A drain switch shared by a worker's sessions. Cheap to clone.
///
/// ```
/// # async fn demo() {
/// use std::time::Duration;
/// use state_recovery::protocol::Drain;
/// let drain = Drain::new();
/// let session = drain.session(); // one per live connection
/// assert_eq!(drain.sessions(), 1);
/// drain.start(); // e.g. on SIGTERM: every session closes with 1012
/// drop(session);
/// assert!(drain.idle(Duration::from_secs(5)).await);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Drain {
    state: Arc<watch::Sender<State>>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    /// A switch that is not draining, with no sessions.
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: Arc::new(watch::Sender::new(State::default())),
        }
    }

    /// Starts draining: every session ([`started`](Self::started) resolves) closes its socket
    /// with [`DRAIN_CLOSE_CODE`]. Idempotent.
    pub fn start(&self) {
        self.state
            .send_if_modified(|s| !std::mem::replace(&mut s.draining, true));
    }

    /// Whether draining has started.
    #[must_use]
    pub fn is_draining(&self) -> bool {
        self.state.borrow().draining
    }

    /// Resolves once draining has started (at once if it has): give it to axum's
    /// `with_graceful_shutdown` so the worker stops accepting connections.
    pub async fn started(&self) {
        let mut rx = self.state.subscribe();
        // The sender lives as long as `self`, so this only ends when draining starts.
        let _ = rx.wait_for(|s| s.draining).await;
    }

    /// Registers a live session; it counts until the guard is dropped.
    #[must_use]
    pub fn session(&self) -> SessionGuard {
        self.state
            .send_modify(|s| s.sessions = s.sessions.saturating_add(1));
        SessionGuard {
            state: Arc::clone(&self.state),
        }
    }

    /// The number of live sessions.
    #[must_use]
    pub fn sessions(&self) -> usize {
        self.state.borrow().sessions
    }

    /// Waits until no session is left or `deadline` has passed; `true` if none is left.
    pub async fn idle(&self, deadline: Duration) -> bool {
        let mut rx = self.state.subscribe();
        let idle = tokio::time::timeout(deadline, rx.wait_for(|s| s.sessions == 0))
            .await
            .is_ok_and(|r| r.is_ok());
        idle
    }
}

/// A live session of a [`Drain`]; dropping it ends the session.
#[derive(Debug)]
pub struct SessionGuard {
    state: Arc<watch::Sender<State>>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.state
            .send_modify(|s| s.sessions = s.sessions.saturating_sub(1));
    }
}
