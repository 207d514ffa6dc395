//! Graceful drain: a worker that is being stopped tells every client to reconnect elsewhere
//! now, and waits (up to a deadline) for their sockets to close.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// The WebSocket close code a draining worker closes every session with: 1012, "Service
/// Restart" (RFC 6455 registry). The JS client reconnects at once on it (a small jitter, no
/// backoff), to another worker.
pub const DRAIN_CLOSE_CODE: u16 = 1012;

/// The close reason sent with [`DRAIN_CLOSE_CODE`] (then a space and the spread in ms:
/// [`Drain::close_reason`]).
pub const DRAIN_CLOSE_REASON: &str = "drain";

/// The longest reconnect spread a drain asks for: the JS client's own drain jitter
/// (`RECONNECT.drainJitter`), which it never exceeds whatever the reason says.
pub const MAX_DRAIN_SPREAD_MS: u64 = 50;

/// How many sessions per millisecond of spread: a drain of `n` sessions asks its clients to
/// spread their reconnects over `ceil(n / 20)` ms (at least 1, at most
/// [`MAX_DRAIN_SPREAD_MS`]): 1,000 sessions and more get the full 50 ms, one gets 1 ms.
const SESSIONS_PER_MS: usize = 20;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct State {
    draining: bool,
    sessions: usize,
    /// The reconnect spread asked for, fixed when the drain started (ms).
    spread_ms: u64,
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
    ///
    /// The reconnect spread it asks the clients for ([`close_reason`](Self::close_reason)) is
    /// fixed now, from the number of live sessions: the fewer clients have to move, the sooner
    /// each may reconnect.
    pub fn start(&self) {
        self.state.send_if_modified(|s| {
            if s.draining {
                return false;
            }
            s.draining = true;
            s.spread_ms = spread_ms(s.sessions);
            true
        });
    }

    /// The close reason for this drain's sessions: `drain <ms>`, the window (in ms) over which
    /// the clients should spread their reconnects (`ceil(sessions / 20)`, 1 to
    /// [`MAX_DRAIN_SPREAD_MS`]; `drain 50` before the drain started). A client that does not
    /// read it (or an older one) waits its own drain jitter (0–50 ms).
    #[must_use]
    pub fn close_reason(&self) -> String {
        let s = *self.state.borrow();
        let ms = if s.draining {
            s.spread_ms
        } else {
            MAX_DRAIN_SPREAD_MS
        };
        format!("{DRAIN_CLOSE_REASON} {ms}")
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

/// The reconnect spread for a drain of `sessions` sessions (ms).
fn spread_ms(sessions: usize) -> u64 {
    let ms = sessions.div_ceil(SESSIONS_PER_MS).max(1);
    u64::try_from(ms).map_or(MAX_DRAIN_SPREAD_MS, |ms| ms.min(MAX_DRAIN_SPREAD_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spread_grows_with_the_sessions_to_the_clients_own_jitter() {
        assert_eq!(spread_ms(0), 1);
        assert_eq!(spread_ms(1), 1);
        assert_eq!(spread_ms(20), 1);
        assert_eq!(spread_ms(21), 2);
        assert_eq!(spread_ms(500), 25);
        assert_eq!(spread_ms(1000), 50);
        assert_eq!(spread_ms(usize::MAX), 50);
    }

    #[test]
    fn the_reason_is_fixed_when_the_drain_starts() {
        let drain = Drain::new();
        assert_eq!(drain.close_reason(), "drain 50");
        let sessions: Vec<_> = (0..41).map(|_| drain.session()).collect();
        drain.start();
        assert_eq!(drain.close_reason(), "drain 3");
        drop(sessions); // sessions closing do not change it
        assert_eq!(drain.close_reason(), "drain 3");
        drain.start();
        assert_eq!(drain.close_reason(), "drain 3");
    }
}
