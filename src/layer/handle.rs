//! The per-request handle the service leaves in the request extensions.

use std::fmt;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Extensions, StatusCode};
use axum::response::{IntoResponse, Response};

use super::layer::Config;
use crate::error::Reason;
use crate::protocol::{Endpoint, Recovered};
use crate::recovery::Recovery;

/// What [`StateRecoveryLayer`](super::StateRecoveryLayer) gives each request: the
/// [`Endpoint`] and the subject read from the request. Cheap to clone.
///
/// The extractors use it; a handler with its own transport can too, with
/// [`recover`](Self::recover) (or use an [`Endpoint`] directly, without axum).
#[derive(Clone)]
pub struct RecoveryHandle {
    pub(crate) config: Arc<Config>,
    subject: Option<Arc<str>>,
}

impl fmt::Debug for RecoveryHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryHandle")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl RecoveryHandle {
    pub(crate) fn new(config: Arc<Config>, subject: Option<String>) -> Self {
        Self {
            config,
            subject: subject.map(Arc::from),
        }
    }

    /// The handle the layer put into these extensions.
    #[must_use]
    pub fn from_extensions(extensions: &Extensions) -> Option<Self> {
        extensions.get::<Self>().cloned()
    }

    /// The endpoint.
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.config.endpoint
    }

    /// The recovery.
    #[must_use]
    pub fn recovery(&self) -> &Recovery {
        self.config.endpoint.recovery()
    }

    /// The authenticated subject of this request, if any.
    #[must_use]
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// [`Endpoint::recover`] for this request's subject. Never fails. With a guard on the
    /// layer it cannot consult the store and fails closed: use
    /// [`recover_guarded`](Self::recover_guarded).
    #[must_use]
    pub fn recover(&self, message: Option<&[u8]>) -> Recovered {
        self.endpoint().recover(message, self.subject())
    }

    /// [`Endpoint::recover_guarded`] for this request's subject: what the extractors use.
    /// Never fails; without a guard it is [`recover`](Self::recover).
    pub async fn recover_guarded(&self, message: Option<&[u8]>) -> Recovered {
        self.endpoint()
            .recover_guarded(message, self.subject())
            .await
    }

    /// [`Endpoint::refused_guarded`] for this request's subject.
    pub(crate) async fn refused(&self, reason: Reason) -> Recovered {
        self.endpoint()
            .refused_guarded(reason, self.subject())
            .await
    }

    /// [`Endpoint::refused`] for this request's subject (without a guard it is
    /// [`refused`](Self::refused), with nothing awaited).
    pub(crate) fn refused_sync(&self, reason: Reason) -> Recovered {
        self.endpoint().refused(reason, self.subject())
    }
}

/// The [`StateRecoveryLayer`](super::StateRecoveryLayer) is not installed on this route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, thiserror::Error)]
#[error("state-recovery: StateRecoveryLayer is not installed on this route")]
pub struct MissingLayer;

impl IntoResponse for MissingLayer {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RecoveryHandle {
    type Rejection = MissingLayer;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Self::from_extensions(&parts.extensions).ok_or(MissingLayer)
    }
}
