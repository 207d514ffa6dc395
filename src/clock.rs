//! Where "now" comes from: the system clock in production, a settable one in tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time, in whole seconds since the Unix epoch.
///
/// The time decides which OTP step an entry is sealed in and whether an entry is still inside
/// the acceptance window when it comes back. Workers that share a key ring should have clocks
/// that agree to well within one OTP step.
pub trait Clock: Send + Sync + 'static {
    /// Seconds since 1970-01-01T00:00:00Z.
    fn now(&self) -> u64;

    /// [`now`](Self::now), or `None` when the clock reads a time it cannot express as seconds
    /// since the epoch (a time before 1970). Sealing and opening read the clock through this:
    /// at such a time `seal` fails with
    /// [`SealError::ClockOutOfRange`](crate::SealError::ClockOutOfRange) and every entry is
    /// `not-yet-valid`. The default is `Some(self.now())`.
    fn checked_now(&self) -> Option<u64> {
        Some(self.now())
    }
}

/// The operating system's wall clock. A clock set before 1970 reads as 0 through
/// [`now`](Clock::now) and as `None` through [`checked_now`](Clock::checked_now), so nothing
/// is sealed at time 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        self.checked_now().unwrap_or(0)
    }

    fn checked_now(&self) -> Option<u64> {
        secs_since_epoch(SystemTime::now())
    }
}

/// Whole seconds from the epoch to `t`; `None` before the epoch.
fn secs_since_epoch(t: SystemTime) -> Option<u64> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// A clock that only moves when told to: for tests, golden vectors and the CLI's `--now`.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock reading `now` seconds since the epoch.
    #[must_use]
    pub fn new(now: u64) -> Self {
        Self {
            now: AtomicU64::new(now),
        }
    }

    /// Sets the time.
    pub fn set(&self, now: u64) {
        self.now.store(now, Ordering::SeqCst);
    }

    /// Moves the time forward by `secs`, saturating at `u64::MAX`.
    pub fn advance(&self, secs: u64) {
        let _ = self
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(secs))
            });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

impl<C: Clock> Clock for std::sync::Arc<C> {
    fn now(&self) -> u64 {
        (**self).now()
    }

    fn checked_now(&self) -> Option<u64> {
        (**self).checked_now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_saturates() {
        let c = ManualClock::new(10);
        assert_eq!(c.now(), 10);
        c.advance(5);
        assert_eq!(c.now(), 15);
        c.set(u64::MAX - 1);
        c.advance(10);
        assert_eq!(c.now(), u64::MAX);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now() > 1_577_836_800);
        assert_eq!(
            SystemClock.checked_now().map(|t| t > 1_577_836_800),
            Some(true)
        );
        let manual = std::sync::Arc::new(ManualClock::new(7));
        assert_eq!(manual.checked_now(), Some(7));
    }

    #[test]
    fn before_the_epoch_is_none_not_zero() {
        use std::time::Duration;
        assert_eq!(secs_since_epoch(UNIX_EPOCH), Some(0));
        assert_eq!(
            secs_since_epoch(UNIX_EPOCH + Duration::from_millis(1_999)),
            Some(1)
        );
        let before = UNIX_EPOCH.checked_sub(Duration::from_secs(1)).unwrap();
        assert_eq!(secs_since_epoch(before), None);
        let just_before = UNIX_EPOCH.checked_sub(Duration::from_nanos(1)).unwrap();
        assert_eq!(secs_since_epoch(just_before), None);
    }
}
