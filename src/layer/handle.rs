//! The per-request handle the service leaves in the request extensions, and the one place
//! where a reconnect message (from any transport) becomes a [`Recovered`].

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Extensions, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::client_input::ClientInput;
use super::extract::Recovered;
use super::layer::Config;
use crate::bundle::{Bundle, Rejected, Restored};
use crate::error::Reason;
use crate::protocol::RecoveryContext;
use crate::recovery::{Recovery, Scope};

/// What [`StateRecoveryLayer`](super::StateRecoveryLayer) gives each request: the
/// [`Recovery`] and the subject read from the request. Cheap to clone.
///
/// The extractors use it; framework authors with their own transport can too, with
/// [`recover`](Self::recover).
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

    /// The recovery.
    #[must_use]
    pub fn recovery(&self) -> &Recovery {
        &self.config.recovery
    }

    /// The authenticated subject of this request, if any.
    #[must_use]
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// Processes a reconnect message (its JSON text), or its absence: checks its size, opens
    /// its entries one by one, reads its client input separately, logs each rejection with
    /// `tracing`, and returns the result. Never fails: anything that is not a usable message
    /// is a new client, with a fresh salt.
    #[must_use]
    pub fn recover(&self, message: Option<&[u8]>) -> Recovered {
        let Some(message) = message else {
            return self.fresh(None, ClientInput::default());
        };
        let recovery = self.recovery();
        if message.len() > recovery.limits().max_bundle_bytes() {
            // Refused before parsing anything, let alone computing a MAC.
            return self.fresh(Some(Reason::TooLarge), ClientInput::default());
        }
        let input = ClientInput::from_message(message, &self.config.input_limits);
        if let Some(e) = input.error() {
            tracing::info!(
                target: "state_recovery",
                reason = e.code(),
                "client input dropped"
            );
        }
        match envelope(message) {
            Err(reason) => return self.fresh(Some(reason), input),
            Ok(Envelope { salt: None, .. }) => return self.fresh(None, input),
            Ok(_) => {}
        }
        let bundle = match Bundle::parse(message, recovery.limits()) {
            Ok(b) => b,
            Err(e) => return self.fresh(Some(e.reason()), input),
        };
        let scope = Scope::new(bundle.salt()).with_optional_subject(self.subject());
        let restored = recovery.open_entries(&scope, bundle.tokens());
        for r in restored.rejected() {
            log_rejected(r);
        }
        let context = RecoveryContext::new(
            recovery.clone(),
            bundle.salt().clone(),
            self.subject().map(str::to_owned),
        );
        for entry in restored.accepted() {
            context.observe_revision(entry.key, entry.revision);
        }
        let unclaimed = self
            .config
            .registry
            .as_ref()
            .map_or(0, |r| r.report_unclaimed(&restored));
        tracing::debug!(
            target: "state_recovery",
            restored = restored.len(),
            rejected = restored.rejected().len(),
            unclaimed,
            "reconnect bundle opened"
        );
        let mut recovered = Recovered::new(restored, input, context, None);
        recovered.unclaimed = unclaimed;
        recovered
    }

    /// A new client: fresh salt, nothing restored.
    pub(crate) fn fresh(&self, rejection: Option<Reason>, input: ClientInput) -> Recovered {
        if let Some(reason) = rejection {
            tracing::info!(
                target: "state_recovery",
                reason = reason.code(),
                "reconnect message rejected; treating the client as new"
            );
        }
        let context =
            RecoveryContext::fresh(self.recovery().clone(), self.subject().map(str::to_owned));
        Recovered::new(Restored::default(), input, context, rejection)
    }
}

/// The top-level fields that decide how a message is handled; `entries` and `input` are
/// skipped here and read by their own parsers.
#[derive(Deserialize)]
pub(crate) struct Envelope<'a> {
    #[serde(rename = "type", borrow, default)]
    pub(crate) kind: Option<Cow<'a, str>>,
    #[serde(default)]
    salt: Option<IgnoredAny>,
}

/// Parses the envelope; a `type` other than `recover` is not a reconnect message.
pub(crate) fn envelope(message: &[u8]) -> Result<Envelope<'_>, Reason> {
    let env: Envelope<'_> = serde_json::from_slice(message).map_err(|_| Reason::Malformed)?;
    match env.kind.as_deref() {
        None | Some("recover") => Ok(env),
        Some(_) => Err(Reason::Malformed),
    }
}

/// One event per rejected entry: the state key it claims (hex) and the reason code. Never the
/// token, payload, salt or any secret.
fn log_rejected(r: &Rejected) {
    let key = r
        .claimed_key
        .map_or_else(|| "-".to_owned(), |k| k.to_string());
    tracing::info!(
        target: "state_recovery",
        key = %key,
        index = r.index,
        reason = r.reason.code(),
        "state entry not restored"
    );
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
