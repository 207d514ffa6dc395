//! The service: puts a [`RecoveryHandle`] into each request and serves the JS client.

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::{self, Either, MapOk, Ready, TryFutureExt};
use sha2::{Digest, Sha256};
use tower::Service;

use super::handle::RecoveryHandle;
use super::layer::Config;

/// The JS client (an ES module with no build step), embedded at compile time.
pub const CLIENT_JS: &str = include_str!("../../client/state-recovery.js");

/// The future of [`StateRecoveryService`]: the client script, ready at once, or the inner
/// service's future with its response turned into an axum [`Response`].
pub type ResponseFuture<F, T, E> = Either<Ready<Result<Response, E>>, MapOk<F, fn(T) -> Response>>;

/// The service made by [`StateRecoveryLayer`](super::StateRecoveryLayer).
#[derive(Clone)]
pub struct StateRecoveryService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> std::fmt::Debug for StateRecoveryService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateRecoveryService")
            .field("client_path", &self.config.client_path)
            .finish_non_exhaustive()
    }
}

impl<S> StateRecoveryService<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }
}

impl<S, B> Service<Request<B>> for StateRecoveryService<S>
where
    S: Service<Request<B>>,
    S::Response: IntoResponse,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let is_client = self.config.client_path.as_deref() == Some(req.uri().path())
            && (req.method() == Method::GET || req.method() == Method::HEAD);
        if is_client {
            return Either::Left(future::ready(Ok(client_response(&req))));
        }
        let (mut parts, body) = req.into_parts();
        let subject = self.config.subject.as_ref().and_then(|f| f(&parts));
        parts
            .extensions
            .insert(RecoveryHandle::new(self.config.clone(), subject));
        let into: fn(S::Response) -> Response = IntoResponse::into_response;
        Either::Right(
            self.inner
                .call(Request::from_parts(parts, body))
                .map_ok(into),
        )
    }
}

/// A strong validator for the embedded script: it changes exactly when the script does, so
/// browsers revalidate cheaply and never run a stale client after a deploy.
fn etag() -> &'static HeaderValue {
    static ETAG: OnceLock<HeaderValue> = OnceLock::new();
    ETAG.get_or_init(|| {
        let digest = Sha256::digest(CLIENT_JS.as_bytes());
        let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
        HeaderValue::try_from(format!("\"{hex}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
    })
}

fn client_response<B>(req: &Request<B>) -> Response {
    let etag = etag();
    let fresh = req
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/").as_bytes() == etag.as_bytes());
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/javascript; charset=utf-8"),
        ),
        // Revalidate every time (a 304 is cheap): a rolling deploy must not leave a page
        // running an old client against a new server.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, etag.clone()),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    // For HEAD, hyper drops the body and keeps its length.
    (headers, Body::from(CLIENT_JS)).into_response()
}
