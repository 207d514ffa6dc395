//! CPU time and resident memory of processes, from /proc (and getrusage for this one).

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on Linux).
const TICKS_PER_SEC: u64 = 100;

/// A process's CPU time (user + system, every thread, the dead ones too) and resident set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) cpu: Duration,
    pub(crate) rss_kb: u64,
}

/// `/proc/<pid>/stat` fields 14 and 15 and `VmRSS` of `/proc/<pid>/status`; `None` if the
/// process is gone.
pub(crate) fn usage(pid: u32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = after.split(' ');
    // `after` starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    let ticks = utime.saturating_add(stime);
    Some(Usage {
        cpu: Duration::from_millis(ticks.saturating_mul(1000) / TICKS_PER_SEC),
        rss_kb,
    })
}

/// The children of `pid` (nginx's master → its worker), from `/proc/<pid>/task/*/children`.
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out
}

/// This process's CPU time (user + system), microsecond resolution.
pub(crate) fn self_cpu() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF).map_or(Duration::ZERO, |u| {
        let t = |tv: nix::sys::time::TimeVal| {
            Duration::from_secs(u64::try_from(tv.tv_sec()).unwrap_or(0))
                + Duration::from_micros(u64::try_from(tv.tv_usec()).unwrap_or(0))
        };
        t(u.user_time()) + t(u.system_time())
    })
}

/// The machine's busy CPU time over every core since boot (/proc/stat's first line: all but
/// idle and iowait).
pub(crate) fn machine_busy() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return Duration::ZERO;
    };
    let Some(cpu) = stat.lines().next().and_then(|l| l.strip_prefix("cpu ")) else {
        return Duration::ZERO;
    };
    let f: Vec<u64> = cpu
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is in user already)
    let busy: u64 = f
        .iter()
        .enumerate()
        .filter(|(i, _)| !matches!(i, 3 | 4) && *i < 8)
        .map(|(_, v)| *v)
        .sum();
    Duration::from_millis(busy.saturating_mul(1000) / TICKS_PER_SEC)
}

/// The kernel's listen-queue counters (/proc/net/netstat `TcpExt`): `ListenOverflows` (a
/// connection completed but the accept queue was full) and `ListenDrops` (SYNs dropped at a
/// listener, overflows included). Machine-wide: every listener on this machine counts.
pub(crate) fn listen_drops() -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string("/proc/net/netstat") else {
        return (0, 0);
    };
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return (0, 0);
    };
    let get = |want: &str| {
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == want)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    };
    (get("ListenOverflows"), get("ListenDrops"))
}

/// This process's resident set, kB.
pub(crate) fn self_rss_kb() -> u64 {
    usage(std::process::id()).map_or(0, |u| u.rss_kb)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        // Burn 20 ms of CPU (however long that takes on a loaded machine, at most 10 s).
        let start = self_cpu();
        let t = std::time::Instant::now();
        let mut x = 0_u64;
        while self_cpu() < start + Duration::from_millis(20)
            && t.elapsed() < Duration::from_secs(10)
        {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        assert!(self_cpu() >= start + Duration::from_millis(20));
        let u = usage(std::process::id()).unwrap();
        assert!(u.rss_kb > 100, "{u:?}");
        assert!(usage(u32::MAX).is_none());
        let (overflows, drops) = listen_drops();
        assert!(drops >= overflows);
        assert!(machine_busy() > Duration::ZERO);
    }
}
