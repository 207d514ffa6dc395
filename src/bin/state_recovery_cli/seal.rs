//! `seal`: one JSON value on stdin, one token on stdout.

use std::io::{self, Write};
use std::process::ExitCode;

use serde_json::Value;
use state_recovery::{EntryKind, Location, Recovery, Scope};

use crate::state_recovery_cli::input::read_capped;
use crate::Fatal;

/// Reads one JSON value (at most the token size limit in bytes) and prints its token, of
/// `kind`.
pub(crate) fn seal(
    recovery: &Recovery,
    kind: EntryKind,
    scope: &Scope<'_>,
    location: &Location,
    revision: u64,
    schema: u32,
) -> Result<ExitCode, Fatal> {
    // A value larger than a whole token can never be sealed: refuse it unread.
    let cap = recovery.limits().max_token_bytes();
    let input = read_capped(io::stdin().lock(), cap)
        .map_err(|e| Fatal::input(&e))?
        .ok_or_else(|| Fatal::new(format!("input is larger than {cap} bytes")))?;
    let value = parse_value(&input, recovery.limits().max_depth())?;
    let key = recovery.state_key(location);
    let token = recovery
        .seal_with(kind, scope, key, revision, schema, &value)
        .map_err(|e| Fatal::new(format!("cannot seal: {e}")))?;
    let mut out = io::stdout().lock();
    writeln!(out, "{token}")
        .and_then(|()| out.flush())
        .map_err(|e| Fatal::output(&e))?;
    Ok(ExitCode::SUCCESS)
}

/// Exactly one JSON value (surrounding whitespace allowed), nested at most `max_depth` deep.
fn parse_value(input: &[u8], max_depth: usize) -> Result<Value, Fatal> {
    // serde_json stops at 128 levels by itself; say so in the same words as our own limit.
    let value: Value = serde_json::from_slice(input).map_err(|e| {
        if e.to_string().starts_with("recursion limit exceeded") {
            too_deep(max_depth)
        } else {
            Fatal::new(format!("stdin is not one JSON value: {e}"))
        }
    })?;
    if depth(&value) > max_depth {
        return Err(too_deep(max_depth));
    }
    Ok(value)
}

fn too_deep(max: usize) -> Fatal {
    Fatal::new(format!(
        "the JSON value nests deeper than the limit of {max} levels"
    ))
}

/// Nesting depth of arrays and objects (a scalar is 0). Bounded by serde_json's own limit.
fn depth(value: &Value) -> usize {
    let inner = match value {
        Value::Array(items) => items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => map.values().map(depth).max().unwrap_or(0),
        _ => return 0,
    };
    inner.saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_within_depth() {
        assert_eq!(
            parse_value(b" [1,{\"a\":[]}]\n", 3).unwrap().to_string(),
            "[1,{\"a\":[]}]"
        );
        assert!(parse_value(b"[[[]]]", 2).is_err());
        assert!(parse_value(b"1 2", 2).is_err());
        assert!(parse_value(b"", 2).is_err());
        assert!(parse_value(b"{", 2).is_err());
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let err = parse_value(deep.as_bytes(), 64).unwrap_err();
        assert!(err.0.contains("deeper than the limit of 64"), "{}", err.0);
    }
}
