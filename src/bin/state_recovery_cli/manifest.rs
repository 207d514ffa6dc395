//! `keys diff OLD NEW`: what a release would do to the state its predecessor sealed.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;
use state_recovery::manifest::{self, DiffOptions, Finding, Manifest, ManifestError};

use crate::state_recovery_cli::input::read_capped;
use crate::Fatal;

/// One `--json` line.
#[derive(Serialize)]
struct FindingLine<'a> {
    kind: &'static str,
    breaking: bool,
    key: String,
    location: &'a str,
    detail: &'a str,
}

/// Compares two manifest files (`-` is stdin, for one of them); exit 0 when nothing breaks,
/// 1 when something does.
pub(crate) fn diff(
    old: &Path,
    new: &Path,
    no_overlap: bool,
    json: bool,
) -> Result<ExitCode, Fatal> {
    if is_stdin(old) && is_stdin(new) {
        return Err(Fatal::new("OLD and NEW cannot both be - (stdin)"));
    }
    let old_manifest = load("OLD", old)?;
    let new_manifest = load("NEW", new)?;
    let d = manifest::diff(&old_manifest, &new_manifest, DiffOptions { no_overlap });

    let mut out = BufWriter::new(io::stdout().lock());
    for f in &d.findings {
        if json {
            write_json(&mut out, f)
        } else {
            write_text(&mut out, f)
        }
        .map_err(|e| Fatal::output(&e))?;
    }
    if !json {
        let breaking = d.findings.iter().filter(|f| f.is_breaking()).count();
        let informational = d.findings.len().saturating_sub(breaking);
        let count = old_manifest.keys.len();
        writeln!(
            out,
            "{count} {} in OLD, {} in NEW: {breaking} breaking, {informational} informational",
            if count == 1 { "key" } else { "keys" },
            new_manifest.keys.len()
        )
        .map_err(|e| Fatal::output(&e))?;
    }
    out.flush().map_err(|e| Fatal::output(&e))?;
    Ok(if d.is_breaking() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Reads and parses one manifest; errors name the file as `OLD (path)` or `NEW (path)`.
fn load(which: &str, path: &Path) -> Result<Manifest, Fatal> {
    let name = if is_stdin(path) {
        format!("{which} (stdin)")
    } else {
        format!("{which} ({})", path.display())
    };
    let fail = |detail: &dyn std::fmt::Display| Fatal::new(format!("{name}: {detail}"));
    let read = if is_stdin(path) {
        read_bounded(io::stdin().lock())
    } else {
        File::open(path).and_then(read_bounded)
    };
    let bytes = read
        .map_err(|e| fail(&format_args!("cannot read: {e}")))?
        .ok_or_else(|| {
            fail(&ManifestError::TooLarge {
                max: manifest::MAX_BYTES,
            })
        })?;
    let text = String::from_utf8(bytes).map_err(|_| fail(&"not UTF-8"))?;
    Manifest::parse(&text).map_err(|e| fail(&e))
}

/// At most [`manifest::MAX_BYTES`]; `None` if there is more.
fn read_bounded(reader: impl Read) -> io::Result<Option<Vec<u8>>> {
    read_capped(reader, manifest::MAX_BYTES)
}

/// `dropped  demo::components@counter (3f2a...)  no successor (same key or alias) in NEW`.
fn write_text(out: &mut impl Write, f: &Finding) -> io::Result<()> {
    writeln!(
        out,
        "{}  {} ({})  {}",
        f.kind.code(),
        printable(&f.location),
        f.key,
        printable(&f.detail)
    )
}

fn write_json(out: &mut impl Write, f: &Finding) -> io::Result<()> {
    let line = FindingLine {
        kind: f.kind.code(),
        breaking: f.is_breaking(),
        key: f.key.to_string(),
        location: &f.location,
        detail: &f.detail,
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

/// The text with control characters escaped, so that a location from the file can neither
/// break the one-line-per-finding output nor drive the terminal.
fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("a::b@c"), "a::b@c");
        assert_eq!(printable("a\nb\u{1b}[31m\tc"), "a\\nb\\u{1b}[31m\\tc");
        assert_eq!(printable("é"), "é");
    }
}
