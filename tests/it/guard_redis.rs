//! The guard against a real `redis-server` (feature `redis`): two "workers" (endpoints with
//! their own `RedisStore` connection) share one Redis that each test starts itself on a
//! loopback port of its own (3641..), stopped, paused and restarted mid-test.
//!
//! Needs `redis-server` on the PATH (`apt-get install -y redis-server`; `.ci/run` installs
//! it): without it these tests fail, they are not skipped.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use state_recovery::guard::{Guard, GuardPolicy, GuardStore, GuardVerdict, RedisStore};
use state_recovery::protocol::Endpoint;
use state_recovery::{Reason, Recovery};

use crate::guard::{keys, reasons, recovery, Tab};

/// A `redis-server` this test started: no persistence, loopback only; killed when dropped.
struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

fn redis_server_binary() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("redis-server"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "redis-server is not installed: the Redis tests (feature `redis`) start their own \
             server; install it with `apt-get install -y redis-server` (.ci/run does)"
        )
    })
}

impl RedisServer {
    fn start(port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "state-recovery-redis-{port}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            child: None,
            port,
            dir,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let port = self.port;
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is in use: this test starts its own redis-server on 127.0.0.1:{port} \
             and never talks to one it did not start; stop what listens there"
        );
        let log = self.dir.join("redis.log");
        let child = Command::new(redis_server_binary())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if self.ping() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("redis-server on port {port} exited ({status}):\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {port} did not answer PING within 10 s");
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    }

    /// SIGSTOP: connections stay open, nothing answers (a slow or hung Redis).
    fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGKILL: connections refused (a Redis that is down). Its data is gone.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A plain command's reply, for looking into the store.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> T {
        let client = redis::Client::open(self.url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        cmd.query_async(&mut c).await.unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A worker: an endpoint whose guard has its own connection to `url`.
fn worker(r: &Recovery, url: &str, policy: GuardPolicy) -> (Endpoint, Guard) {
    let store: Arc<dyn GuardStore> = Arc::new(RedisStore::open(url).unwrap());
    let guard = Guard::builder(r, store)
        .policy(policy)
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    (Endpoint::new(r.clone()).with_guard(guard.clone()), guard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_logout_on_one_worker_is_refused_on_the_other() {
    let redis = RedisServer::start(3641);
    let r = recovery();
    let (k1, k2) = keys(&r);
    let (a, guard_a) = worker(&r, &redis.url(), GuardPolicy::FailClosed);
    let (b, guard_b) = worker(&r, &redis.url(), GuardPolicy::FailClosed);
    let (mut alice, mut bob) = (Tab::default(), Tab::default());
    for (tab, who) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let rec = tab.connect(&a, Some(who)).await;
        assert_eq!(rec.guard_verdict(), GuardVerdict::Checked);
        tab.seal(&rec, k1, 1);
        tab.seal(&rec, k2, 2);
    }
    let rec = alice.clone().connect(&b, Some("alice")).await;
    assert_eq!((rec.restored().len(), reasons(&rec)), (2, vec![]));
    // A salt handed out and never used since: registered when it was handed out.
    let mut idle = Tab::default();
    idle.connect(&a, Some("alice")).await;

    guard_a.revoke_subject("alice").await.unwrap();
    let rec = idle.connect(&b, Some("alice")).await;
    assert_eq!(rec.guard_verdict(), GuardVerdict::Revoked);
    let rec = alice.connect(&b, Some("alice")).await;
    assert_eq!(rec.guard_verdict(), GuardVerdict::Revoked);
    assert_eq!(reasons(&rec), [Reason::Revoked, Reason::Revoked]);
    assert!(rec.salt_message().is_some() && alice.entries.is_empty());
    // Her fresh salt was registered at the new epoch, on the other worker too.
    let rec = alice.connect(&b, Some("alice")).await;
    alice.seal(&rec, k1, 3);
    let rec = alice.clone().connect(&a, Some("alice")).await;
    assert_eq!((rec.restored().len(), reasons(&rec)), (1, vec![]));
    let rec = bob.connect(&b, Some("bob")).await;
    assert_eq!((rec.restored().len(), reasons(&rec)), (2, vec![]));

    // One client's salt, anonymous.
    let mut anon = Tab::default();
    let rec = anon.connect(&a, None).await;
    anon.seal(&rec, k1, 1);
    guard_b
        .revoke_salt(anon.salt.as_ref().unwrap(), None)
        .await
        .unwrap();
    let rec = anon.connect(&a, None).await;
    assert_eq!(reasons(&rec), [Reason::Revoked]);
    assert_eq!(guard_b.stats().revoked + guard_a.stats().revoked, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_replayed_older_revision_is_refused_on_the_other_worker() {
    let redis = RedisServer::start(3642);
    let r = recovery();
    let (k1, k2) = keys(&r);
    let (a, guard_a) = worker(&r, &redis.url(), GuardPolicy::FailClosed);
    let (b, guard_b) = worker(&r, &redis.url(), GuardPolicy::FailClosed);
    let mut tab = Tab::default();
    let rec = tab.connect(&a, Some("dave")).await;
    tab.seal(&rec, k1, 1);
    tab.seal(&rec, k2, 1);
    let old = tab.clone();
    for n in 2..=5 {
        tab.seal(&rec, k1, n);
    }
    // Written behind: within a few flush intervals, without anyone asking.
    let end = Instant::now() + Duration::from_secs(5);
    while guard_a.stats().marks_written < 6 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(guard_a.stats().marks_written, 6);

    let rec = old.clone().connect(&b, Some("dave")).await;
    let rejected = rec.rejected();
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        (rejected[0].reason, rejected[0].claimed_revision),
        (Reason::RolledBack, Some(1))
    );
    assert!(rec.restored().raw(&k2).is_some());
    assert_eq!(guard_b.stats().rolled_back, 1);

    // The client dropped its counter entry: worker B continues above the mark anyway.
    let mut dropped = tab.clone();
    dropped.entries.remove(&k1);
    let rec = dropped.connect(&b, Some("dave")).await;
    assert_eq!(dropped.seal(&rec, k1, 60), 6);
    guard_b.flush().await.unwrap();
    let rec = dropped.clone().connect(&a, Some("dave")).await;
    assert_eq!((rec.restored().len(), reasons(&rec)), (2, vec![]));
    // The entry at rev 5 is now older than the mark (6) everywhere.
    let rec = tab.connect(&a, Some("dave")).await;
    assert_eq!(reasons(&rec), [Reason::RolledBack]);

    // This connection carries only rev 1 of the counter, but the marks seed it ...
    let rec = old.clone().connect(&a, Some("dave")).await;
    assert_eq!(rec.context().next_revision(k1), 7);
    // ... and marks only go up: an older revision sealed late changes nothing.
    rec.context().seal(k1, 2, 1, &0u64).unwrap();
    guard_a.flush().await.unwrap();
    let marks: Vec<String> = redis
        .query(redis::cmd("KEYS").arg("state-recovery:m:*"))
        .await;
    assert_eq!(marks.len(), 1, "{marks:?}");
    let mark: Option<String> = redis
        .query(redis::cmd("HGET").arg(&marks[0]).arg(k1.to_string()))
        .await;
    assert_eq!(mark.as_deref(), Some("6"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_or_hung_fail_open_and_closed_within_the_timeout_and_back() {
    let mut redis = RedisServer::start(3643);
    let r = recovery();
    let (k1, k2) = keys(&r);
    let (open, guard_open) = worker(&r, &redis.url(), GuardPolicy::FailOpen);
    let (closed, guard_closed) = worker(&r, &redis.url(), GuardPolicy::FailClosed);
    let mut tab = Tab::default();
    let rec = tab.connect(&open, Some("eve")).await;
    tab.seal(&rec, k1, 1);
    tab.seal(&rec, k2, 1);
    guard_open.flush().await.unwrap();
    // Both workers are connected before anything goes wrong.
    assert_eq!(
        tab.clone()
            .connect(&closed, Some("eve"))
            .await
            .restored()
            .len(),
        2
    );

    for outage in ["hung (SIGSTOP)", "down (SIGKILL)"] {
        if outage.starts_with("hung") {
            redis.pause();
        } else {
            redis.kill();
        }
        let t0 = Instant::now();
        let rec = tab.clone().connect(&open, Some("eve")).await;
        let took = t0.elapsed();
        assert!(
            took < Duration::from_millis(600),
            "{outage}: fail-open took {took:?}"
        );
        if outage.starts_with("hung") {
            assert!(
                took >= Duration::from_millis(90),
                "{outage}: {took:?} (the timeout)"
            );
        }
        assert_eq!(
            rec.guard_verdict(),
            GuardVerdict::Unavailable(GuardPolicy::FailOpen),
            "{outage}"
        );
        assert_eq!(rec.restored().len(), 2, "{outage}");
        // Seals go on; their marks wait in the queue.
        let rev = rec.context().next_revision(k1);
        let update = rec.context().seal(k1, rev, 1, &7u64).unwrap();
        tab.take(&update);

        let t0 = Instant::now();
        let salt = tab.salt.clone();
        let rec = tab.clone().connect(&closed, Some("eve")).await;
        let took = t0.elapsed();
        assert!(
            took < Duration::from_millis(600),
            "{outage}: fail-closed took {took:?}"
        );
        assert_eq!(
            rec.guard_verdict(),
            GuardVerdict::Unavailable(GuardPolicy::FailClosed)
        );
        assert_eq!(
            reasons(&rec),
            [Reason::GuardUnavailable, Reason::GuardUnavailable]
        );
        assert!(rec.salt_message().is_none() && Some(rec.context().salt()) == salt.as_ref());
        assert!(rec.context().is_guard_blocked());
    }
    assert_eq!(guard_open.stats().failed_open, 2);
    assert_eq!(guard_closed.stats().failed_closed, 2);
    assert!(guard_open.queued() >= 1);

    // Back (empty: no persistence). Within a few reconnect attempts, both guard again.
    redis.restart();
    let end = Instant::now() + Duration::from_secs(10);
    let rec = loop {
        let rec = tab.clone().connect(&closed, Some("eve")).await;
        if rec.guard_verdict() == GuardVerdict::Checked || Instant::now() > end {
            break rec;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rec.guard_verdict(), GuardVerdict::Checked);
    assert_eq!(rec.restored().len(), 2);
    // The marks sealed during the outage reach the new Redis.
    let end = Instant::now() + Duration::from_secs(10);
    while guard_open.flush().await.is_err() && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(guard_open.queued(), 0);
    let marks: Vec<String> = redis
        .query(redis::cmd("KEYS").arg("state-recovery:m:*"))
        .await;
    assert_eq!(marks.len(), 1, "{marks:?}");
    let mark: Option<String> = redis
        .query(redis::cmd("HGET").arg(&marks[0]).arg(k1.to_string()))
        .await;
    assert_eq!(mark.as_deref(), Some("3"));
    let rec = tab.clone().connect(&open, Some("eve")).await;
    assert_eq!(rec.guard_verdict(), GuardVerdict::Checked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_are_prefixed_hashed_and_expire() {
    let redis = RedisServer::start(3644);
    let r = recovery();
    let (k1, _) = keys(&r);
    let store: Arc<dyn GuardStore> =
        Arc::new(RedisStore::with_prefix(&redis.url(), "app-1").unwrap());
    assert!(RedisStore::with_prefix(&redis.url(), "bad prefix").is_err());
    assert!(RedisStore::open("http://nope").is_err());
    let guard = Guard::builder(&r, store).build().unwrap();
    let e = Endpoint::new(r.clone()).with_guard(guard.clone());
    let mut tab = Tab::default();
    let rec = tab.connect(&e, Some("subject-frank")).await;
    tab.seal(&rec, k1, 1);
    guard.flush().await.unwrap();
    guard.revoke_subject("subject-frank").await.unwrap();
    let salt = tab.salt.clone().unwrap().encode();
    let keys: Vec<String> = redis.query(redis::cmd("KEYS").arg("*")).await;
    // The subject's epoch, the scope's record and marks.
    assert_eq!(keys.len(), 3, "{keys:?}");
    let ttl_max = 2 * r.otp().max_age_secs() + 2;
    for key in &keys {
        assert!(key.starts_with("app-1:"), "{key}");
        assert!(!key.contains("frank") && !key.contains(&salt), "{key}");
        let ttl: i64 = redis.query(redis::cmd("TTL").arg(key)).await;
        assert!(ttl > 0 && ttl as u64 <= ttl_max, "{key}: {ttl}");
    }
    let epoch: String = redis
        .query(redis::cmd("GET").arg(keys.iter().find(|k| k.starts_with("app-1:e:")).unwrap()))
        .await;
    assert_eq!(epoch, "1");
}
