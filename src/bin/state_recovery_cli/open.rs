//! `open` (tokens one per line, one JSON line each) and `inspect` (one token, unverified).

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use serde::Serialize;
use serde_json::Value;
use state_recovery::{EntryKind, Limits, Location, Opened, Reason, Recovery, Rejection, Scope};

use crate::state_recovery_cli::input::{Line, Lines};
use crate::Fatal;

/// `{"ok":true,...}` for a token that verified.
#[derive(Serialize)]
struct OpenedLine<'a> {
    ok: bool,
    key: String,
    rev: u64,
    schema: u32,
    value: &'a Value,
}

/// `{"ok":false,"error":"<reason code>"}` for a token that did not.
#[derive(Serialize)]
struct RejectedLine {
    ok: bool,
    error: &'static str,
}

impl RejectedLine {
    const fn new(reason: Reason) -> Self {
        Self {
            ok: false,
            error: reason.code(),
        }
    }
}

/// What `inspect` prints: the token's own claims, none of them checked. For an encrypted
/// entry, the header only: `payload` is null, `payload_len` the ciphertext's length, and
/// nothing is decrypted (`inspect` has no keys).
#[derive(Serialize)]
struct InspectedLine<'a> {
    verified: bool,
    version: u8,
    kind: EntryKind,
    key_id: &'a str,
    step: u64,
    key: &'a str,
    rev: u64,
    schema: u32,
    payload_len: usize,
    payload: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    tag: &'a str,
}

/// Opens every non-blank line of stdin; exit 0 if all opened, 1 if any was rejected.
pub(crate) fn open(
    recovery: &Recovery,
    scope: &Scope<'_>,
    location: Option<&Location>,
) -> Result<ExitCode, Fatal> {
    let expected = location.map(|l| recovery.state_key(l));
    let stdin = io::stdin().lock();
    let mut lines = Lines::new(stdin, recovery.limits().max_token_bytes());
    let mut out = BufWriter::new(io::stdout().lock());
    let mut all_opened = true;
    while let Some(line) = lines.next_line().map_err(|e| Fatal::input(&e))? {
        if line.is_blank() {
            continue;
        }
        let result = match line {
            Line::TooLong => Err(Reason::TooLarge),
            Line::Text(bytes) => std::str::from_utf8(bytes)
                .map_err(|_| Reason::Malformed)
                .and_then(|token| {
                    let opened: Result<Opened<Value>, Rejection> = match expected {
                        Some(key) => recovery.open_at(scope, key, token),
                        None => recovery.open(scope, token),
                    };
                    opened.map_err(|r| r.reason())
                }),
        };
        let written = match &result {
            Ok(o) => write_json(
                &mut out,
                &OpenedLine {
                    ok: true,
                    key: o.key.to_string(),
                    rev: o.revision,
                    schema: o.schema,
                    value: &o.value,
                },
            ),
            Err(reason) => {
                all_opened = false;
                write_json(&mut out, &RejectedLine::new(*reason))
            }
        };
        written.map_err(|e| Fatal::output(&e))?;
    }
    out.flush().map_err(|e| Fatal::output(&e))?;
    Ok(if all_opened {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Decodes the first non-blank line of stdin without any key; exit 1 if it does not decode.
pub(crate) fn inspect() -> Result<ExitCode, Fatal> {
    let max = Limits::default().max_token_bytes();
    let mut lines = Lines::new(io::stdin().lock(), max);
    let mut first = Err(Reason::Malformed);
    while let Some(line) = lines.next_line().map_err(|e| Fatal::input(&e))? {
        if line.is_blank() {
            continue;
        }
        first = match line {
            Line::TooLong => Err(Reason::TooLarge),
            Line::Text(bytes) => Ok(bytes.trim_ascii().to_vec()),
        };
        break;
    }
    let inspected = first.and_then(|bytes| {
        let text = String::from_utf8(bytes).map_err(|_| Reason::Malformed)?;
        state_recovery::inspect(&text, max).map_err(|r| r.reason())
    });
    let mut out = io::stdout().lock();
    let (written, code) = match inspected {
        Ok(i) => {
            let shown = InspectedLine {
                verified: false,
                version: i.version,
                kind: i.kind,
                key_id: &i.key_id,
                step: i.step,
                key: &i.key,
                rev: i.rev,
                schema: i.schema,
                payload_len: i.payload_len,
                // Unverified bytes: shown only if they are JSON (serde_json caps the depth).
                // Empty for an encrypted entry, so null.
                payload: serde_json::from_slice(&i.payload).ok(),
                nonce: i.nonce.as_deref(),
                tag: &i.tag,
            };
            (write_json(&mut out, &shown), ExitCode::SUCCESS)
        }
        Err(reason) => (
            write_json(&mut out, &RejectedLine::new(reason)),
            ExitCode::FAILURE,
        ),
    };
    written
        .and_then(|()| out.flush())
        .map_err(|e| Fatal::output(&e))?;
    Ok(code)
}

fn write_json(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}
