//! The JS client's reconnect schedule: the `RECONNECT` table of client/state-recovery.js and
//! its `schedule()`. `tests::the_table_is_the_js_clients` parses the table out of the JS file,
//! so changing one without the other fails.

use rand::Rng;

/// The reconnect schedule's constants (`RECONNECT` in client/state-recovery.js).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reconnect {
    /// `firstJitter`, ms: the first retry after a close waits random(0, first).
    pub(crate) first_jitter: u64,
    /// `baseDelay`, ms: attempt n ≥ 2 waits random(0, min(max, base · 2^(n−2))).
    pub(crate) base_delay: u64,
    /// `maxDelay`, ms: the cap of the exponential backoff.
    pub(crate) max_delay: u64,
    /// `drainJitter`, ms: the wait after a drain close.
    pub(crate) drain_jitter: u64,
    /// `maxDoublings`: the exponent's cap.
    pub(crate) max_doublings: u32,
    /// `drainCloseCode`: the close code that means "the worker drains".
    pub(crate) drain_close_code: u16,
}

/// The JS client's defaults.
pub(crate) const RECONNECT: Reconnect = Reconnect {
    first_jitter: 25,
    base_delay: 250,
    max_delay: 15_000,
    drain_jitter: 50,
    max_doublings: 30,
    drain_close_code: 1012,
};

/// The first retry's window the tool uses: [`RECONNECT`]'s, unless `STORM_FIRST_JITTER_MS`
/// sets another (an experiment: the JS client's `firstJitter` option).
pub(crate) fn first_jitter() -> u64 {
    static FIRST: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *FIRST.get_or_init(|| {
        std::env::var("STORM_FIRST_JITTER_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(RECONNECT.first_jitter)
    })
}

/// `drainSpread(reason)` of the JS client: the window (ms) a drain close's reason
/// `drain <ms>` asks for; any other reason, the client's own drain jitter.
pub(crate) fn drain_spread(reason: &str) -> u64 {
    reason
        .strip_prefix("drain ")
        .filter(|d| (1..=5).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse().ok())
        .unwrap_or(RECONNECT.drain_jitter)
}

/// `schedule(drain)` of `connect()`: the attempt counter, reset by `recovered` and by a drain.
#[derive(Debug, Default, Clone)]
pub(crate) struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// The delay (ms) before the next attempt after a close, drain or not, and the attempt
    /// number `onReconnecting` would report. `random` is `Math.random()`: in [0, 1).
    #[cfg(test)]
    pub(crate) fn next_with(&mut self, drain: bool, random: f64) -> (u32, u64) {
        let spread = drain.then_some(RECONNECT.drain_jitter);
        self.next_with_first(spread, random, RECONNECT.first_jitter)
    }

    /// `next_with` after a close that was a drain asking for `spread` ms (`Some`) or not
    /// (`None`), with another first retry window (`firstJitter`).
    pub(crate) fn next_with_first(
        &mut self,
        spread: Option<u64>,
        random: f64,
        first: u64,
    ) -> (u32, u64) {
        let table = RECONNECT;
        if spread.is_some() {
            self.attempt = 0;
        }
        let cap = if let Some(spread) = spread {
            table.drain_jitter.min(spread)
        } else if self.attempt == 0 {
            self.attempt = 1;
            first
        } else {
            let doublings = (self.attempt - 1).min(table.max_doublings);
            self.attempt = self.attempt.saturating_add(1);
            let grown = table
                .base_delay
                .checked_shl(doublings)
                .filter(|g| g >> doublings == table.base_delay)
                .unwrap_or(u64::MAX);
            table.max_delay.min(grown)
        };
        // Math.round(Math.random() * cap)
        #[allow(clippy::cast_precision_loss)]
        let scaled = random * cap as f64;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let delay = (scaled + 0.5).floor() as u64;
        (self.attempt.max(1), delay)
    }

    /// `next_with_first` with a fresh random number and the first-retry window in force.
    pub(crate) fn next(&mut self, spread: Option<u64>) -> u64 {
        let r: f64 = rand::rng().random();
        self.next_with_first(spread, r, first_jitter()).1
    }

    /// A `recovered` message resets the attempts.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const JS: &str = include_str!("../../../client/state-recovery.js");

    /// The `name: number` pairs of `export const NAME = Object.freeze({ ... });` in the client.
    fn js_table(name: &str) -> Vec<(String, u64)> {
        let start = format!("export const {name} = Object.freeze({{");
        let at = JS
            .find(&start)
            .unwrap_or_else(|| panic!("no `{start}` in the client"));
        let body = &JS[at + start.len()..];
        let body = &body[..body.find("});").expect("the table's end")];
        body.lines()
            .map(|l| l.split("//").next().unwrap().trim())
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l
                    .trim_end_matches(',')
                    .split_once(':')
                    .unwrap_or_else(|| panic!("not `name: value`: {l}"));
                let v = v.trim().replace('_', "");
                let v = v
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}.{k}: not a plain number: {v}"));
                (k.trim().to_owned(), v)
            })
            .collect()
    }

    #[test]
    fn the_table_is_the_js_clients() {
        let t = RECONNECT;
        let ours = [
            ("firstJitter", t.first_jitter),
            ("baseDelay", t.base_delay),
            ("maxDelay", t.max_delay),
            ("drainJitter", t.drain_jitter),
            ("maxDoublings", u64::from(t.max_doublings)),
            ("drainCloseCode", u64::from(t.drain_close_code)),
        ];
        let js = js_table("RECONNECT");
        let ours: Vec<(String, u64)> = ours.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        assert_eq!(
            js, ours,
            "client/state-recovery.js RECONNECT and tools/storm differ: change both"
        );
        // The drain close code is the crate's.
        assert_eq!(
            t.drain_close_code,
            state_recovery::protocol::DRAIN_CLOSE_CODE
        );
    }

    #[test]
    fn the_js_client_uses_its_table() {
        // connect() takes every default from RECONNECT: no literal of it is left in there.
        let connect = &JS[JS.find("export function connect(").unwrap()..];
        for used in [
            "RECONNECT.firstJitter",
            "RECONNECT.baseDelay",
            "RECONNECT.maxDelay",
            "RECONNECT.drainJitter",
            "RECONNECT.maxDoublings",
            "RECONNECT.drainCloseCode",
        ] {
            assert!(connect.contains(used), "connect() does not use {used}");
        }
        for literal in [
            "|| 250",
            "|| 15000",
            ": 50;",
            ", 50)",
            ", 25)",
            "attempt++, 30)",
            "- 2, 30)",
            "== 1012",
        ] {
            assert!(
                !connect.contains(literal),
                "connect() still has `{literal}`"
            );
        }
    }

    #[test]
    fn the_default_limits_are_the_js_clients_and_the_crates() {
        let l = crate::stash::DEFAULT_LIMITS;
        let ours: Vec<(String, u64)> = [
            ("maxTokenBytes", l.max_token_bytes),
            ("maxBundleBytes", l.max_bundle_bytes),
            ("maxEntries", l.max_entries),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), *v as u64))
        .collect();
        assert_eq!(js_table("DEFAULT_LIMITS"), ours);
        let crate_limits = state_recovery::Limits::default();
        assert_eq!(crate_limits.max_token_bytes(), l.max_token_bytes);
        assert_eq!(crate_limits.max_bundle_bytes(), l.max_bundle_bytes);
        assert_eq!(crate_limits.max_entries(), l.max_entries);
    }

    /// The JS tests' sequences: a first retry within `firstJitter`, then doubling from the
    /// base, capped, reset by `recovered` and by a drain; delays are round(random × cap).
    #[test]
    fn the_schedule_is_the_js_clients() {
        let mut b = Backoff::default();
        let top = 0.999_999;
        let got: Vec<u64> = (0..9).map(|_| b.next_with(false, top).1).collect();
        assert_eq!(got, [25, 250, 500, 1000, 2000, 4000, 8000, 15000, 15000]);
        assert_eq!(b.next_with(true, top), (1, 50));
        assert_eq!(
            b.next_with(false, top),
            (1, 25),
            "a drain resets the attempts"
        );
        assert_eq!(b.next_with(false, 0.5), (2, 125));
        b.reset();
        assert_eq!(b.next_with(false, 0.0), (1, 0));
        assert_eq!(b.next_with(false, 0.5), (2, 125));
        assert_eq!(b.next_with(false, 0.25), (3, 125));
        b.reset();
        assert_eq!(b.next_with_first(None, top, 10), (1, 10));
        for _ in 0..100 {
            let (_, d) = b.next_with(false, top);
            assert!(d <= 15_000);
        }
        assert!((0..1000).all(|_| b.next(Some(RECONNECT.drain_jitter)) <= 50));
    }

    #[test]
    fn reads_the_drain_reason_as_the_js_client_does() {
        // The cases of client/test/connect.test.mjs ("drainSpread reads `drain <ms>`...").
        for (reason, want) in [
            ("drain 7", 7),
            ("drain 00050", 50),
            ("drain 0", 0),
            ("drain", 50),
            ("drain -1", 50),
            ("drain 1.5", 50),
            ("DRAIN 7", 50),
            ("drain 123456", 50),
            (" drain 1", 50),
        ] {
            assert_eq!(drain_spread(reason), want, "{reason:?}");
        }
        let mut b = Backoff::default();
        assert_eq!(b.next_with_first(Some(1), 0.999_999, 25), (1, 1));
        assert_eq!(b.next_with_first(Some(500), 0.999_999, 25), (1, 50));
    }
}
