//! The plain-HTTP extractor for [`Recovered`]: the reconnect message from a `State-Recovery`
//! header or a JSON body's `state_recovery` field.

use std::future::Future;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, HeaderName};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use futures_util::future::{self, Either};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::handle::{MissingLayer, RecoveryHandle};
use crate::error::Reason;
use crate::protocol::Recovered;

/// The request header carrying the reconnect message as unpadded base64url JSON.
pub const HEADER: &str = "state-recovery";

/// The field of a JSON request body that carries the reconnect message.
pub const BODY_FIELD: &str = "state_recovery";

/// How much larger than the bundle cap a JSON body may be (the application's own fields).
const BODY_SLACK: usize = 64 * 1024;

/// As an extractor (plain HTTP), [`Recovered`] reads the `State-Recovery` header (unpadded
/// base64url of the message JSON) or, failing that, the `"state_recovery"` field of a JSON
/// body. No message, or one that is not usable, means a new client: a fresh salt, nothing
/// restored, never an error. It may consume the body, so put it last among a handler's
/// arguments; a JSON body it read stays available in [`Recovered::body`].
///
/// Without a guard on the layer, a request with no message or with the header is handled
/// before the extractor's future is first polled, with nothing to await (the handle is
/// borrowed from the request, not cloned); only a JSON body (read asynchronously) or a guard
/// (its store's round trip) takes the asynchronous path.
impl<S: Send + Sync> FromRequest<S> for Recovered {
    type Rejection = MissingLayer;

    fn from_request(
        req: Request,
        _: &S,
    ) -> impl Future<Output = Result<Self, Self::Rejection>> + Send {
        let Some(handle) = req.extensions().get::<RecoveryHandle>() else {
            return Either::Left(future::ready(Err(MissingLayer)));
        };
        if handle.endpoint().guard().is_none() {
            if let Some(recovered) = without_guard(handle, req.headers()) {
                return Either::Left(future::ready(Ok(recovered)));
            }
        }
        // Boxed: the rare paths' state (the body, the guard's round trip) would otherwise
        // make every request's future, which axum moves into its own, kilobytes larger.
        let handle = handle.clone();
        Either::Right(Box::pin(
            async move { Ok(guarded_or_body(handle, req).await) },
        ))
    }
}

/// The `State-Recovery` header's name, built once.
static HEADER_NAME: HeaderName = HeaderName::from_static(HEADER);

/// Without a guard nothing but a body needs awaiting: the header, or no message at all, is
/// handled here (as [`guarded_or_body`] would, the guard's round trip being a no-op). `None`
/// for a JSON body.
fn without_guard(handle: &RecoveryHandle, headers: &HeaderMap) -> Option<Recovered> {
    let message = match header_message(handle, headers) {
        HeaderMessage::Absent if is_json(headers) => return None,
        HeaderMessage::Absent => None,
        HeaderMessage::Refused(reason) => return Some(handle.refused_sync(reason)),
        HeaderMessage::Json(json) => Some(json),
    };
    Some(handle.recover(message.as_deref()))
}

/// The asynchronous path: a guard's round trip, or a JSON body to read.
async fn guarded_or_body(handle: RecoveryHandle, req: Request) -> Recovered {
    match header_message(&handle, req.headers()) {
        HeaderMessage::Json(json) => return handle.recover_guarded(Some(&json)).await,
        HeaderMessage::Refused(reason) => return handle.refused(reason).await,
        HeaderMessage::Absent => {}
    }
    if !is_json(req.headers()) {
        return handle.recover_guarded(None).await;
    }
    let limit = handle
        .recovery()
        .limits()
        .max_bundle_bytes()
        .saturating_add(BODY_SLACK);
    let (parts, body) = req.into_parts();
    let body = match read_body(&parts.headers, body, limit).await {
        Ok(body) => body,
        Err(reason) => return handle.refused(reason).await,
    };
    #[derive(Deserialize)]
    struct WithField<'a> {
        #[serde(borrow, default)]
        state_recovery: Option<&'a RawValue>,
    }
    let out = match serde_json::from_slice::<WithField<'_>>(&body) {
        Ok(WithField {
            state_recovery: Some(raw),
        }) => handle.recover_guarded(Some(raw.get().as_bytes())).await,
        Ok(WithField {
            state_recovery: None,
        }) => handle.recover_guarded(None).await,
        Err(_) => handle.refused(Reason::Malformed).await,
    };
    out.with_body(Vec::from(body))
}

/// What the `State-Recovery` header holds.
enum HeaderMessage {
    /// No such header: look at the body.
    Absent,
    /// Refused whole: repeated or not base64url (`malformed`), or over the cap (`too-large`).
    Refused(Reason),
    /// The message's JSON, decoded.
    Json(Vec<u8>),
}

/// The header: one value, size-checked before it is decoded.
fn header_message(handle: &RecoveryHandle, headers: &HeaderMap) -> HeaderMessage {
    let mut values = headers.get_all(&HEADER_NAME).iter();
    let Some(value) = values.next() else {
        return HeaderMessage::Absent;
    };
    if values.next().is_some() {
        return HeaderMessage::Refused(Reason::Malformed);
    }
    let max = handle.recovery().limits().max_bundle_bytes();
    // base64 makes 4 characters of 3 bytes.
    if value.len() / 4 > max / 3 {
        return HeaderMessage::Refused(Reason::TooLarge);
    }
    match URL_SAFE_NO_PAD.decode(value.as_bytes()) {
        Ok(json) => HeaderMessage::Json(json),
        Err(_) => HeaderMessage::Refused(Reason::Malformed),
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
