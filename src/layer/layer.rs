//! The tower layer and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::http::request::Parts;
use tokio::sync::Semaphore;
use tower::Layer;

use super::origin::{Origin, OriginPolicy};
use super::service::StateRecoveryService;
use crate::protocol::{Drain, Endpoint, InputLimits};
use crate::recovery::Recovery;
use crate::registry::Registry;

/// Reads the authenticated subject (user id) from a request.
pub(crate) type SubjectFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;

/// What every service and extractor shares.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) endpoint: Endpoint,
    pub(crate) client_path: Option<String>,
    pub(crate) subject: Option<Arc<SubjectFn>>,
    pub(crate) first_message_timeout: Duration,
    pub(crate) max_message_bytes: usize,
    pub(crate) drain: Option<Drain>,
    pub(crate) origins: OriginPolicy,
    /// Admission: the permits a WebSocket's recovery waits for (`None`: unbounded).
    pub(crate) admission: Option<Admission>,
}

/// The bound on a worker's concurrent WebSocket recoveries: a semaphore shared by every
/// service and session of one layer, and its size.
#[derive(Clone)]
pub(crate) struct Admission {
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) limit: usize,
}

impl Admission {
    fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }
}

/// Installs state recovery on an axum `Router`: puts a
/// [`RecoveryHandle`](super::RecoveryHandle) into every request's extensions (for the
/// [`Recovered`](super::Recovered) and [`RecoverySocket`](super::RecoverySocket) extractors)
/// and serves the JS client at [`DEFAULT_CLIENT_PATH`](Self::DEFAULT_CLIENT_PATH).
///
/// Every `with_*` method takes `self` by value and returns the changed layer.
///
/// # The `Origin` check
/// Browsers let any page open a WebSocket to any host, with that host's cookies, and no
/// CORS applies; so [`RecoverySocket`](super::RecoverySocket) checks `Origin` before it
/// upgrades (cross-site WebSocket hijacking). By default a browser's upgrade is allowed
/// when its `Origin`'s host and port equal the request's `Host` header (or HTTP/2
/// `:authority`); the scheme is not compared, because behind a TLS-terminating proxy the
/// server cannot know it (to be strict, list the `https://` origins with
/// [`with_allowed_origins`](Self::with_allowed_origins)). Anything else (another host or
/// port, `Origin: null`, a repeated or malformed `Origin`, no `Host`) is refused with 403
/// before the upgrade, and logged (target `state_recovery`, level `info`). A request without
/// `Origin` is allowed in every policy: browsers always send it on a WebSocket handshake, and
/// a client that is not a browser can send any `Origin` it likes, so refusing it would
/// protect nothing (Phoenix does the same). Behind a reverse proxy, forward the client's
/// `Host` unchanged, port included (nginx: `proxy_set_header Host $http_host;`, not `$host`,
/// which drops the port), or list the public origins.
#[derive(Clone)]
#[must_use]
pub struct StateRecoveryLayer {
    config: Arc<Config>,
}

impl fmt::Debug for StateRecoveryLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        f.debug_struct("StateRecoveryLayer")
            .field("endpoint", &c.endpoint)
            .field("client_path", &c.client_path)
            .field("subject", &c.subject.is_some())
            .field("first_message_timeout", &c.first_message_timeout)
            .field("max_message_bytes", &c.max_message_bytes)
            .field("drain", &c.drain.is_some())
            .field("origins", &c.origins)
            .field(
                "max_concurrent_recoveries",
                &c.admission.as_ref().map(|a| a.limit),
            )
            .finish()
    }
}

impl StateRecoveryLayer {
    /// Where the JS client is served unless told otherwise.
    pub const DEFAULT_CLIENT_PATH: &'static str = "/state-recovery.js";
    /// How long a WebSocket session waits for the reconnect message by default.
    pub const DEFAULT_FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
    /// The largest application message a WebSocket session accepts by default: 64 KiB.
    pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;

    /// A layer around a configured [`Recovery`].
    pub fn new(recovery: Recovery) -> Self {
        Self {
            config: Arc::new(Config {
                endpoint: Endpoint::new(recovery),
                client_path: Some(Self::DEFAULT_CLIENT_PATH.to_owned()),
                subject: None,
                first_message_timeout: Self::DEFAULT_FIRST_MESSAGE_TIMEOUT,
                max_message_bytes: Self::DEFAULT_MAX_MESSAGE_BYTES,
                drain: None,
                origins: OriginPolicy::SameHost,
                admission: None,
            }),
        }
    }

    /// Serves the JS client at `path` (GET and HEAD) instead of the default. A path without
    /// a leading `/` gets one.
    pub fn with_client_path(self, path: impl Into<String>) -> Self {
        let mut path = path.into();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        self.map(|c| c.client_path = Some(path))
    }

    /// Does not serve the JS client (serve `client/state-recovery.js` yourself).
    pub fn without_client_route(self) -> Self {
        self.map(|c| c.client_path = None)
    }

    /// Binds entries to the authenticated user: `subject` reads the user id from the request
    /// (typically from an extension your auth layer put there). Entries sealed for one
    /// subject never open for another, even under the same salt. `None` means anonymous
    /// (unless [`require_subject`](Self::require_subject) is set).
    ///
    /// # Layer order
    /// `subject` runs when the request reaches this layer, so the auth layer must run
    /// **before** it, i.e. be the **outer** layer. With axum's `Router::layer` (and
    /// `MethodRouter::layer`), each call wraps everything added before it, so the layer added
    /// **last** runs **first**: add the auth layer *after* this one.
    ///
    /// ```text
    /// Router::new()
    ///     .route("/ws", get(ws))
    ///     .layer(StateRecoveryLayer::new(recovery).with_subject(user_id)) // runs second
    ///     .layer(auth_layer)                                               // runs first
    /// ```
    ///
    /// With `tower::ServiceBuilder` the order is the reverse: its first `.layer(..)` is the
    /// outermost, so there the auth layer comes *before* this one. In the wrong order
    /// `subject` sees no user, every request is anonymous, and state is sealed unbound to any
    /// user, with no error: set [`require_subject`](Self::require_subject) to make that
    /// fail closed.
    pub fn with_subject<F>(self, subject: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.map(|c| c.subject = Some(Arc::new(subject)))
    }

    /// Fails closed when the [subject](Self::with_subject) function finds no user: such a
    /// request restores nothing (the message is refused whole as `no-subject`, logged as a
    /// warning; the client keeps its salt and stash), and its context refuses to seal
    /// ([`SealError::NoSubject`](crate::SealError::NoSubject)). Set it on routes that only
    /// authenticated users reach, so a wrong layer order or a subject function that reads the
    /// wrong extension shows up at once instead of sealing everything as anonymous. Without
    /// [`with_subject`](Self::with_subject), every request is refused. See
    /// [`Endpoint::require_subject`].
    pub fn require_subject(self) -> Self {
        self.map(|c| c.endpoint = c.endpoint.clone().require_subject())
    }

    /// Caps on the untrusted client input.
    pub fn with_input_limits(self, limits: InputLimits) -> Self {
        self.map(|c| c.endpoint = c.endpoint.clone().with_input_limits(limits))
    }

    /// How long a WebSocket session waits for the client's first message before it treats
    /// the client as new.
    pub fn with_first_message_timeout(self, timeout: Duration) -> Self {
        self.map(|c| c.first_message_timeout = timeout)
    }

    /// The largest message (and frame) a WebSocket session accepts from the client, besides
    /// the reconnect message, which may be as large as
    /// [`Limits::max_bundle_bytes`](crate::Limits::max_bundle_bytes) (1 MiB by default). Default
    /// [`DEFAULT_MAX_MESSAGE_BYTES`](Self::DEFAULT_MAX_MESSAGE_BYTES) (64 KiB).
    ///
    /// [`RecoverySocket`](super::RecoverySocket) sizes its upgrade from these limits: the
    /// transport refuses any message or frame over the larger of the two, before buffering
    /// it, by closing the socket with code **1009** (Message Too Big); the read and write
    /// buffers are 8 KiB (they grow for a larger message), instead of tungstenite's 128 KiB
    /// each, which it keeps resident for every socket; the write buffer may grow to 8 KiB plus
    /// twice that cap while the client reads slowly (so that is also the largest message the
    /// session can send). See [`RecoverySocket`](super::RecoverySocket) for the figures and
    /// [`map_upgrade`](super::RecoverySocket::map_upgrade) to change any of them.
    pub fn with_max_message_bytes(self, n: usize) -> Self {
        self.map(|c| c.max_message_bytes = n)
    }

    /// The application's declared slots: every reconnect message is then checked for
    /// verified entries that no slot claims, which are counted
    /// ([`Recovered::unclaimed`](super::Recovered::unclaimed)) and logged with the reason
    /// `unclaimed` (state renamed or removed without an alias).
    /// Only entries under a slot's current key are refreshed.
    pub fn with_registry(self, registry: Arc<Registry>) -> Self {
        self.map(|c| c.endpoint = c.endpoint.clone().with_registry(registry))
    }

    /// Does not re-seal restored entries from an older time step or under a rotated key, nor
    /// refresh long-lived sessions' entries (see [`Endpoint::without_refresh`]).
    pub fn without_refresh(self) -> Self {
        self.map(|c| c.endpoint = c.endpoint.clone().without_refresh())
    }

    /// Delivers the JS client's events exactly once across worker deaths (see
    /// [`Endpoint::with_events`] and
    /// [events exactly once](crate::protocol#events-exactly-once)): `recovered` announces the
    /// last applied sequence, the client numbers its messages and resends those not
    /// acknowledged after a reconnect, and [`RecoverySession::recv`](super::RecoverySession::recv)
    /// drops the ones the restored state already has and answers each new one with **one**
    /// `batch` frame holding everything the handler sent while handling it (send through the
    /// session, not the socket). Messages without a sequence (other clients) are handled as
    /// before.
    pub fn with_events(self) -> Self {
        self.map(|c| c.endpoint = c.endpoint.clone().with_events())
    }

    /// Checks every reconnect (WebSocket and HTTP) against `guard`'s shared store:
    /// revocation (`revoked`) and rollback (`rolled-back`), one round trip bounded by the
    /// guard's timeout, with its policy when the store is unavailable; every seal queues a
    /// high-water mark (written behind). See [`guard`](crate::guard) and
    /// [`Endpoint::with_guard`]. Call [`Guard::flush`](crate::guard::Guard::flush) when the
    /// worker stops.
    pub fn with_guard(self, guard: crate::guard::Guard) -> Self {
        self.map(|c| c.endpoint = c.endpoint.clone().with_guard(guard))
    }

    /// Graceful drain: once `drain` [starts](Drain::start), every
    /// [`RecoverySession`](super::RecoverySession) closes its socket with close code 1012 at
    /// its next [`recv`](super::RecoverySession::recv), and the JS client reconnects at once,
    /// elsewhere. Give [`Drain::started`] to axum's `with_graceful_shutdown` so the worker
    /// stops accepting, then wait for [`Drain::idle`].
    pub fn with_drain(self, drain: Drain) -> Self {
        self.map(|c| c.drain = Some(drain))
    }

    /// Allows WebSocket upgrades ([`RecoverySocket`](super::RecoverySocket)) only from these
    /// origins, instead of the default same-host check. Each is `scheme://host[:port]`, as a
    /// browser sends it (`https://app.example.com`, `http://localhost:3000`), compared
    /// exactly: scheme, host and port (case-insensitive; a default port may be written or
    /// not; a trailing `/` is ignored). The request's `Host` is not looked at, so this is
    /// the option behind a proxy that rewrites `Host`, and the strict one where the scheme
    /// matters (list only `https://` origins). An entry that is not an origin is logged
    /// and never matches. Requests without `Origin` are still allowed. See
    /// [the `Origin` check](Self#the-origin-check).
    pub fn with_allowed_origins<I, S>(self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let list = origins
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                let parsed = Origin::parse(o.as_ref());
                if parsed.is_none() {
                    tracing::warn!(
                        target: "state_recovery",
                        index = i,
                        "allowed origin is not scheme://host[:port]; it never matches"
                    );
                }
                parsed
            })
            .collect();
        self.map(|c| c.origins = OriginPolicy::List(list))
    }

    /// **Insecure**: allows WebSocket upgrades from any origin, so any web page the user
    /// visits can open a session with the user's cookies (cross-site WebSocket hijacking).
    /// Only for a socket that does not rely on ambient credentials (it authenticates with a
    /// token in the first message, not a cookie), or for local experiments. See
    /// [the `Origin` check](Self#the-origin-check).
    pub fn with_any_origin_insecure(self) -> Self {
        self.map(|c| c.origins = OriginPolicy::Any)
    }

    /// Admission control: at most `n` WebSocket recoveries run at once on this worker (every
    /// service made from this layer shares the bound). Off by default (every recovery runs as
    /// soon as its first message is in). A *recovery* is what a
    /// [`RecoverySession`](super::RecoverySession) does between the client's first message
    /// and `recovered`: verifying the bundle, sending `salt`, the application's callback
    /// restoring its state up to [`ready`](super::RecoverySession::ready) (or the first
    /// [`send`](super::RecoverySession::send) / [`recv`](super::RecoverySession::recv)), and
    /// writing `recovered`. Each waits for a permit (first come, first served) once its first
    /// message is in (or the first-message timeout fired), and gives it back when `recovered`
    /// has been written, or when the session is dropped (the client went away, the callback
    /// returned without `ready`). Waiting for the first message takes no permit, nor does
    /// anything after `recovered`: live sessions' events never wait for one. With a guard,
    /// a store that has not answered within 5 ms gets the permit back until it answers, so a
    /// slow store does not serialize recoveries.
    ///
    /// What it is for: bounding how much of a worker's runtime a flood of reconnects (a
    /// reconnect storm after a worker died, or a client reconnecting on purpose with large
    /// bundles) can take at once, so the worker's live sessions keep a share of it. What it
    /// costs: recoveries queue, and a permit holder that the OS deschedules holds up the
    /// queue. On a 2-core machine shared with the proxy, the load generator and other work
    /// (BENCHMARKS.md, "Admission"), a bound of 1 to 16 did not lower the survivors' event
    /// latency during a 2,000-tab storm, and a bound of 4 made kill → restored slower; that
    /// is why it is off by default. Consider it where the workers' own runtime, not the
    /// machine, is what a storm saturates (a worker with many cores, costly bundles); twice
    /// the cores is a starting point. Keep the callback short until `ready` (restore, then
    /// `ready`, then render): a callback that waits on something slow before `ready` holds
    /// its permit meanwhile. `n` is clamped to at least 1. Plain-HTTP requests
    /// ([`Recovered`](super::Recovered) as an extractor) are not bounded.
    pub fn with_max_concurrent_recoveries(self, n: usize) -> Self {
        self.map(|c| c.admission = Some(Admission::new(n)))
    }

    /// No admission control (the default): every WebSocket recovery runs as soon as its first
    /// message is in; undoes [`with_max_concurrent_recoveries`](Self::with_max_concurrent_recoveries).
    pub fn without_recovery_limit(self) -> Self {
        self.map(|c| c.admission = None)
    }

    /// The bound on concurrent WebSocket recoveries, if any
    /// ([`with_max_concurrent_recoveries`](Self::with_max_concurrent_recoveries)).
    #[must_use]
    pub fn max_concurrent_recoveries(&self) -> Option<usize> {
        self.config.admission.as_ref().map(|a| a.limit)
    }

    /// The endpoint (the transport-independent protocol configuration).
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.config.endpoint
    }

    /// The recovery.
    #[must_use]
    pub fn recovery(&self) -> &Recovery {
        self.config.endpoint.recovery()
    }

    fn map(self, f: impl FnOnce(&mut Config)) -> Self {
        let mut config = Arc::unwrap_or_clone(self.config);
        f(&mut config);
        Self {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for StateRecoveryLayer {
    type Service = StateRecoveryService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StateRecoveryService::new(inner, self.config.clone())
    }
}
