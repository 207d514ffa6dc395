//! `Recovered`: the outcome of a reconnect message, and its plain-HTTP extractor.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http_body_util::{BodyExt, Limited};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::client_input::ClientInput;
use super::handle::{MissingLayer, RecoveryHandle};
use crate::bundle::{Rejected, Restored};
use crate::error::Reason;
use crate::key::StateKey;
use crate::protocol::RecoveryContext;
use crate::protocol::{RecoveredMessage, ServerMessage};

/// The request header carrying the reconnect message as unpadded base64url JSON.
pub const HEADER: &str = "state-recovery";

/// The field of a JSON request body that carries the reconnect message.
pub const BODY_FIELD: &str = "state_recovery";

/// How much larger than the bundle cap a JSON body may be (the application's own fields).
const BODY_SLACK: usize = 64 * 1024;

/// What a reconnect message restored: signed state (verified entry by entry), untrusted
/// client input (separately), and the [`RecoveryContext`] to seal new state with.
///
/// As an extractor (plain HTTP) it reads the `State-Recovery` header (unpadded base64url of
/// the message JSON) or, failing that, the `"state_recovery"` field of a JSON body. No
/// message, or one that is not usable, means a new client: a fresh salt, nothing restored,
/// never an error. It may consume the body, so put it last among a handler's arguments; a
/// JSON body it read stays available in [`body`](Self::body).
pub struct Recovered {
    restored: Restored,
    input: ClientInput,
    context: RecoveryContext,
    rejection: Option<Reason>,
    body: Option<Bytes>,
    pub(crate) unclaimed: usize,
}

impl std::fmt::Debug for Recovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The body may hold anything the user typed: its length only.
        f.debug_struct("Recovered")
            .field("restored", &self.restored)
            .field("input", &self.input)
            .field("context", &self.context)
            .field("rejection", &self.rejection)
            .field("body_len", &self.body.as_ref().map(Bytes::len))
            .field("unclaimed", &self.unclaimed)
            .finish()
    }
}

impl Recovered {
    pub(crate) fn new(
        restored: Restored,
        input: ClientInput,
        context: RecoveryContext,
        rejection: Option<Reason>,
    ) -> Self {
        Self {
            restored,
            input,
            context,
            rejection,
            body: None,
            unclaimed: 0,
        }
    }

    /// The restored value for `key` as a `T`; `None` if there was no accepted entry for it or
    /// its JSON is not a `T` (logged as `invalid-payload`; ask [`restored`](Self::restored)
    /// for the detail).
    #[must_use]
    pub fn get<T: DeserializeOwned>(&self, key: StateKey) -> Option<T> {
        log_failed(key, self.restored.get(&key)).map(|o| o.value)
    }

    /// As [`get`](Self::get), but an entry sealed with another `schema` version is `None`
    /// too (logged as `outdated`): the component starts fresh.
    #[must_use]
    pub fn get_schema<T: DeserializeOwned>(&self, key: StateKey, schema: u32) -> Option<T> {
        log_failed(key, self.restored.get_schema(&key, schema)).map(|o| o.value)
    }

    /// Every accepted entry, and the rejected ones.
    #[must_use]
    pub fn restored(&self) -> &Restored {
        &self.restored
    }

    /// The entries that were not restored, with their reasons (for the server only).
    #[must_use]
    pub fn rejected(&self) -> &[Rejected] {
        self.restored.rejected()
    }

    /// How many verified entries no declared slot claims (counted only when the layer has
    /// a registry, [`StateRecoveryLayer::with_registry`](super::StateRecoveryLayer::with_registry)).
    #[must_use]
    pub const fn unclaimed(&self) -> usize {
        self.unclaimed
    }

    /// Why the whole message was refused (`malformed` or `too-large`), if it was.
    #[must_use]
    pub fn bundle_rejection(&self) -> Option<Reason> {
        self.rejection
    }

    /// The client input: **untrusted**, validate it as any user input.
    #[must_use]
    pub fn input(&self) -> &ClientInput {
        &self.input
    }

    /// The context to seal new state with.
    #[must_use]
    pub fn context(&self) -> &RecoveryContext {
        &self.context
    }

    /// The JSON request body, when the extractor read it.
    #[must_use]
    pub fn body(&self) -> Option<&Bytes> {
        self.body.as_ref()
    }

    /// `{"type":"recovered",...}`: counts only. A message refused whole counts as one
    /// rejected entry.
    #[must_use]
    pub fn recovered_message(&self) -> RecoveredMessage {
        let whole = usize::from(self.rejection.is_some());
        RecoveredMessage {
            restored: self.restored.len(),
            rejected: self.restored.rejected().len().saturating_add(whole),
        }
    }

    /// What the client must be told: `salt` (if one was issued), then `recovered`.
    #[must_use]
    pub fn messages(&self) -> Vec<ServerMessage> {
        let salt = self
            .context
            .salt_issued()
            .then(|| self.context.salt_message().into());
        salt.into_iter()
            .chain([self.recovered_message().into()])
            .collect()
    }

    /// The parts, for handlers that keep them apart.
    #[must_use]
    pub fn into_parts(self) -> (Restored, ClientInput, RecoveryContext) {
        (self.restored, self.input, self.context)
    }
}

fn log_failed<T>(
    key: StateKey,
    got: Result<Option<crate::Opened<T>>, crate::Rejection>,
) -> Option<crate::Opened<T>> {
    got.unwrap_or_else(|e| {
        tracing::info!(
            target: "state_recovery",
            key = %key,
            reason = e.reason().code(),
            "restored entry not usable"
        );
        None
    })
}

impl<S: Send + Sync> FromRequest<S> for Recovered {
    type Rejection = MissingLayer;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let handle = RecoveryHandle::from_extensions(req.extensions()).ok_or(MissingLayer)?;
        if req.headers().contains_key(HEADER) {
            return Ok(from_header(&handle, req.headers()));
        }
        if !is_json(req.headers()) {
            return Ok(handle.recover(None));
        }
        let limit = handle
            .recovery()
            .limits()
            .max_bundle_bytes()
            .saturating_add(BODY_SLACK);
        let (parts, body) = req.into_parts();
        let body = match read_body(&parts.headers, body, limit).await {
            Ok(body) => body,
            Err(reason) => return Ok(handle.fresh(Some(reason), ClientInput::default())),
        };
        #[derive(Deserialize)]
        struct WithField<'a> {
            #[serde(borrow, default)]
            state_recovery: Option<&'a RawValue>,
        }
        let mut out = match serde_json::from_slice::<WithField<'_>>(&body) {
            Ok(WithField {
                state_recovery: Some(raw),
            }) => handle.recover(Some(raw.get().as_bytes())),
            Ok(WithField {
                state_recovery: None,
            }) => handle.recover(None),
            Err(_) => handle.fresh(Some(Reason::Malformed), ClientInput::default()),
        };
        out.body = Some(body);
        Ok(out)
    }
}

/// The header: one value, size-checked before it is decoded.
fn from_header(handle: &RecoveryHandle, headers: &HeaderMap) -> Recovered {
    let mut values = headers.get_all(HEADER).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return handle.fresh(Some(Reason::Malformed), ClientInput::default());
    };
    let max = handle.recovery().limits().max_bundle_bytes();
    // base64 makes 4 characters of 3 bytes.
    if value.len() / 4 > max / 3 {
        return handle.fresh(Some(Reason::TooLarge), ClientInput::default());
    }
    match URL_SAFE_NO_PAD.decode(value.as_bytes()) {
        Ok(json) => handle.recover(Some(&json)),
        Err(_) => handle.fresh(Some(Reason::Malformed), ClientInput::default()),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim();
            m.eq_ignore_ascii_case("application/json")
                || (m.len() > 5 && m.to_ascii_lowercase().ends_with("+json"))
        })
}

/// The body, or why not: `too-large` over `limit` (by Content-Length before reading, or
/// while reading), `malformed` if it could not be read.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Reason> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(Reason::TooLarge);
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Reason::TooLarge),
        Err(_) => Err(Reason::Malformed),
    }
}
