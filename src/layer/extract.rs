//! The plain-HTTP extractor for [`Recovered`]: the reconnect message from a `State-Recovery`
//! header or a JSON body's `state_recovery` field.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
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
impl<S: Send + Sync> FromRequest<S> for Recovered {
    type Rejection = MissingLayer;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let handle = RecoveryHandle::from_extensions(req.extensions()).ok_or(MissingLayer)?;
        if req.headers().contains_key(HEADER) {
            return Ok(from_header(&handle, req.headers()).await);
        }
        if !is_json(req.headers()) {
            return Ok(handle.recover_guarded(None).await);
        }
        let limit = handle
            .recovery()
            .limits()
            .max_bundle_bytes()
            .saturating_add(BODY_SLACK);
        let (parts, body) = req.into_parts();
        let body = match read_body(&parts.headers, body, limit).await {
            Ok(body) => body,
            Err(reason) => return Ok(handle.refused(reason).await),
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
        Ok(out.with_body(Vec::from(body)))
    }
}

/// The header: one value, size-checked before it is decoded.
async fn from_header(handle: &RecoveryHandle, headers: &HeaderMap) -> Recovered {
    let mut values = headers.get_all(HEADER).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return handle.refused(Reason::Malformed).await;
    };
    let max = handle.recovery().limits().max_bundle_bytes();
    // base64 makes 4 characters of 3 bytes.
    if value.len() / 4 > max / 3 {
        return handle.refused(Reason::TooLarge).await;
    }
    match URL_SAFE_NO_PAD.decode(value.as_bytes()) {
        Ok(json) => handle.recover_guarded(Some(&json)).await,
        Err(_) => handle.refused(Reason::Malformed).await,
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
