//! The Redis store (feature `redis`): what every worker of a cluster shares. One multiplexed
//! connection per store (reconnected in the background by the `redis` crate's
//! `ConnectionManager`), one Lua script per call, so a reconnect costs one round trip.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Script};
use tokio::sync::OnceCell;

use super::store::{
    CheckReply, CheckRequest, GuardStore, RaiseBatch, RaiseReply, ScopeStatus, StoreError,
    StoreFuture, StoreId,
};
use crate::key::StateKey;

/// The check of [`GuardStore::check`], in one round trip.
///
/// KEYS: the subject's epoch, the presented scope's record, its marks, the fresh scope's
/// record. ARGV: time to live (s), has a subject (`0`/`1`), presented a scope (`0`/`1`).
/// Epochs are compared as the strings `INCR` wrote (`0` when there is none); a record is an
/// epoch or the tombstone `r`.
const CHECK: &str = r"
local ttl = tonumber(ARGV[1])
local epoch = '0'
if ARGV[2] == '1' then
  epoch = redis.call('GET', KEYS[1]) or '0'
  redis.call('EXPIRE', KEYS[1], ttl)
end
local status = 'fresh'
local marks = {}
if ARGV[3] == '1' then
  local rec = redis.call('GET', KEYS[2])
  if not rec then
    redis.call('SET', KEYS[2], epoch, 'EX', ttl)
    status = 'registered'
  else
    redis.call('EXPIRE', KEYS[2], ttl)
    if rec == epoch then status = 'known' else status = 'revoked' end
  end
  if status ~= 'revoked' then
    marks = redis.call('HGETALL', KEYS[3])
    redis.call('EXPIRE', KEYS[3], ttl)
  end
end
if status == 'fresh' or status == 'revoked' then
  redis.call('SET', KEYS[4], epoch, 'EX', ttl, 'NX')
end
return {status, marks}
";

/// The raise of [`GuardStore::raise`]: raise-only (`HSET` when higher), a new field only
/// below the cap, the record registered when missing, everything renewed.
///
/// KEYS: per scope, its record, its marks, its subject's epoch (the record again when it has
/// no subject). ARGV: time to live (s), the cap, then per scope: has a subject, the number of
/// marks, and that many (state key, revision) pairs. Revisions stay strings (Lua's numbers
/// are doubles, exact up to 2^53, the largest revision handed out; `tostring` would write
/// large ones in exponent form).
const RAISE: &str = r"
local ttl = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local a = 3
local refused = 0
for i = 1, #KEYS, 3 do
  local rec, marks, subj = KEYS[i], KEYS[i + 1], KEYS[i + 2]
  local has_subject = ARGV[a] == '1'
  local n = tonumber(ARGV[a + 1])
  a = a + 2
  if redis.call('EXISTS', rec) == 0 then
    local epoch = '0'
    if has_subject then epoch = redis.call('GET', subj) or '0' end
    redis.call('SET', rec, epoch, 'EX', ttl)
  else
    redis.call('EXPIRE', rec, ttl)
  end
  if has_subject then redis.call('EXPIRE', subj, ttl) end
  local len = redis.call('HLEN', marks)
  for j = 1, n do
    local f, r = ARGV[a], ARGV[a + 1]
    a = a + 2
    local cur = redis.call('HGET', marks, f)
    if cur then
      if tonumber(cur) < tonumber(r) then redis.call('HSET', marks, f, r) end
    elseif len < cap then
      redis.call('HSET', marks, f, r)
      len = len + 1
    else
      refused = refused + 1
    end
  end
  redis.call('EXPIRE', marks, ttl)
end
return refused
";

/// KEYS: the subject's epoch. ARGV: time to live (s).
const REVOKE_SUBJECT: &str = r"
local e = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return e
";

/// KEYS: the scope's record, its marks. ARGV: time to live (s).
const REVOKE_SCOPE: &str = r"
redis.call('SET', KEYS[1], 'r', 'EX', tonumber(ARGV[1]))
redis.call('DEL', KEYS[2])
return 1
";

/// The guard's store in Redis (feature `redis`), for a cluster: every worker connects its
/// own `RedisStore` to the same Redis and so shares revocations and high-water marks.
///
/// Keys (all with a time to live, renewed on use): `<prefix>:e:<subject id>` (a subject's
/// revocation epoch, a counter), `<prefix>:r:<scope id>` (a scope's record: the epoch it was
/// registered at, or the tombstone `r`), `<prefix>:m:<scope id>` (a hash of state key →
/// highest revision sealed). Ids are 32 hex digits of keyed hashes: Redis never sees a salt,
/// a subject, a token or a payload. The prefix (default `state-recovery`) lets applications
/// share one Redis.
///
/// Each call is one Lua script (`EVALSHA`, loaded again after a Redis restart), so a
/// reconnect costs one round trip. It connects on first use, not when built, and reconnects
/// in the background after a failure: a worker starts while Redis is down, and the guard's
/// policy applies until it is back. Run Redis with `maxmemory-policy noeviction` (an
/// evicted record undoes a revocation) and see SECURITY.md for what a restart without
/// persistence loses. A single Redis (or a primary with replicas) is supported; Redis
/// Cluster is not (a call's keys are in different hash slots).
pub struct RedisStore {
    client: Client,
    prefix: String,
    connection: OnceCell<ConnectionManager>,
    connect_timeout: Duration,
    response_timeout: Duration,
    check: Script,
    raise: Script,
    revoke_subject: Script,
    revoke_scope: Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the URL: it may carry a password.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("connected", &self.connection.initialized())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The key prefix used when none is given.
    pub const DEFAULT_PREFIX: &'static str = "state-recovery";

    /// A store for the Redis at `url` (`redis://[user:password@]host[:port][/db]`, or
    /// `redis+unix:///path`), with the default key prefix. Does not connect yet.
    ///
    /// # Errors
    /// [`StoreError::Protocol`] when `url` is not a Redis URL (the URL is not repeated: it may
    /// hold a password).
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::with_prefix(url, Self::DEFAULT_PREFIX)
    }

    /// [`open`](Self::open) with another key prefix: 1 to 64 characters of
    /// `[A-Za-z0-9_.:-]`.
    ///
    /// # Errors
    /// [`StoreError::Protocol`] for a URL that is not a Redis URL, or an invalid prefix.
    pub fn with_prefix(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let valid = (1..=64).contains(&prefix.len())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
        if !valid {
            return Err(StoreError::Protocol(
                "a Redis key prefix is 1 to 64 characters of [A-Za-z0-9_.:-]".into(),
            ));
        }
        let client = Client::open(url).map_err(|_| {
            StoreError::Protocol(
                "not a Redis URL (redis://[user:password@]host[:port][/db])".into(),
            )
        })?;
        Ok(Self {
            client,
            prefix: prefix.to_owned(),
            connection: OnceCell::new(),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            check: Script::new(CHECK),
            raise: Script::new(RAISE),
            revoke_subject: Script::new(REVOKE_SUBJECT),
            revoke_scope: Script::new(REVOKE_SCOPE),
        })
    }

    /// The key prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Connects (if not yet) and sends `PING`: for a readiness check at start-up. Not
    /// needed otherwise: every call connects on first use.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when Redis cannot be reached.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map(drop)
            .map_err(failed)
    }

    /// The shared connection, made on first use (a failed attempt is retried at the next
    /// call). The guard bounds every call with its timeout, this included.
    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.connect_timeout)
            .set_response_timeout(self.response_timeout)
            .set_number_of_retries(2)
            .set_factor(10)
            .set_max_delay(500);
        self.connection
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .cloned()
            .map_err(failed)
    }

    fn key(&self, kind: char, id: &StoreId) -> String {
        format!("{}:{kind}:{id}", self.prefix)
    }

    async fn check_now(&self, r: &CheckRequest) -> Result<CheckReply, StoreError> {
        let mut c = self.connection().await?;
        let subject = r.subject.as_ref().map(|s| self.key('e', s));
        let presented = r.presented.as_ref();
        let mut call = self.check.prepare_invoke();
        // An unused key slot holds the fresh record's name: the script does not touch it.
        let fresh = self.key('r', &r.fresh);
        call.key(subject.as_deref().unwrap_or(&fresh))
            .key(presented.map_or_else(|| fresh.clone(), |p| self.key('r', p)))
            .key(presented.map_or_else(|| fresh.clone(), |p| self.key('m', p)))
            .key(&fresh)
            .arg(secs(r.ttl))
            .arg(u8::from(subject.is_some()))
            .arg(u8::from(presented.is_some()));
        let (status, flat): (String, Vec<String>) =
            call.invoke_async(&mut c).await.map_err(failed)?;
        let status = match status.as_str() {
            "fresh" => ScopeStatus::Fresh,
            "known" => ScopeStatus::Known,
            "registered" => ScopeStatus::Registered,
            "revoked" => ScopeStatus::Revoked,
            _ => return Err(StoreError::Protocol("unknown check status".into())),
        };
        let mut marks = Vec::with_capacity((flat.len() / 2).min(r.max_marks));
        let mut bad = 0usize;
        for pair in flat.chunks_exact(2).take(r.max_marks) {
            let (Some(field), Some(rev)) = (pair.first(), pair.get(1)) else {
                continue;
            };
            match (StateKey::from_hex(field), rev.parse::<u64>()) {
                (Some(k), Ok(v)) => marks.push((k, v)),
                _ => bad = bad.saturating_add(1),
            }
        }
        if bad > 0 {
            tracing::warn!(target: "state_recovery", bad, "guard: Redis holds marks that do not parse; ignored");
        }
        Ok(CheckReply::new(status, marks))
    }

    async fn raise_now(&self, b: &RaiseBatch) -> Result<RaiseReply, StoreError> {
        if b.scopes.is_empty() {
            return Ok(RaiseReply::default());
        }
        let mut c = self.connection().await?;
        let mut call = self.raise.prepare_invoke();
        call.arg(secs(b.ttl)).arg(b.max_marks);
        for s in &b.scopes {
            let record = self.key('r', &s.scope);
            let subject = s.subject.as_ref().map(|id| self.key('e', id));
            call.key(&record)
                .key(self.key('m', &s.scope))
                .key(subject.as_deref().unwrap_or(&record));
            call.arg(u8::from(subject.is_some())).arg(s.marks.len());
            for (key, rev) in &s.marks {
                call.arg(key.to_string()).arg(rev.to_string());
            }
        }
        let refused: u64 = call.invoke_async(&mut c).await.map_err(failed)?;
        Ok(RaiseReply::new(refused))
    }

    async fn revoke_subject_now(&self, subject: &StoreId, ttl: Duration) -> Result<(), StoreError> {
        let mut c = self.connection().await?;
        let mut call = self.revoke_subject.prepare_invoke();
        call.key(self.key('e', subject)).arg(secs(ttl));
        call.invoke_async::<i64>(&mut c)
            .await
            .map(drop)
            .map_err(failed)
    }

    async fn revoke_scope_now(&self, scope: &StoreId, ttl: Duration) -> Result<(), StoreError> {
        let mut c = self.connection().await?;
        let mut call = self.revoke_scope.prepare_invoke();
        call.key(self.key('r', scope))
            .key(self.key('m', scope))
            .arg(secs(ttl));
        call.invoke_async::<i64>(&mut c)
            .await
            .map(drop)
            .map_err(failed)
    }
}

/// A time to live in whole seconds, at least 1.
fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

/// A Redis error as a store error: its kind and text (which hold no ids, salts or subjects,
/// only what Redis or the connection said), at most 200 characters.
fn failed(e: RedisError) -> StoreError {
    let text: String = e.to_string().chars().take(200).collect();
    StoreError::Unavailable(format!("redis: {text}"))
}

impl GuardStore for RedisStore {
    fn check<'a>(&'a self, request: &'a CheckRequest) -> StoreFuture<'a, CheckReply> {
        Box::pin(self.check_now(request))
    }

    fn raise<'a>(&'a self, batch: &'a RaiseBatch) -> StoreFuture<'a, RaiseReply> {
        Box::pin(self.raise_now(batch))
    }

    fn revoke_subject<'a>(&'a self, subject: &'a StoreId, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(self.revoke_subject_now(subject, ttl))
    }

    fn revoke_scope<'a>(&'a self, scope: &'a StoreId, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(self.revoke_scope_now(scope, ttl))
    }
}
