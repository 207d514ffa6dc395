//! `state-recovery`: generate keys and salts, seal, open and inspect tokens from the shell,
//! and compare key manifests before a release.
//!
//! Verbs: `keygen` and `salt` (fresh secrets), `seal` (a JSON value on stdin to a token;
//! `--encrypted` for an encrypted entry), `open` (tokens on stdin, one JSON line each; signed
//! and encrypted alike, the payload decrypted with the configured keys), `inspect` (one
//! token's visible fields, unverified; for an encrypted entry its header only, never
//! decrypted), `keys diff OLD NEW` (two key manifests: what NEW would do to the state OLD
//! sealed; `-` reads one of them from stdin).
//!
//! Configuration for `seal` and `open` comes from the environment, as for a server (see
//! [`RecoveryBuilder::from_env`]): `STATE_RECOVERY_KEYS` (comma-separated `ID:KEY`, the first
//! seals, all open), `STATE_RECOVERY_OTP_STEP`, `STATE_RECOVERY_OTP_SKEW`,
//! `STATE_RECOVERY_NAMESPACE` and `STATE_RECOVERY_LOCATION_KEY`. `keygen`, `salt`, `inspect`
//! and `keys diff` need none of it.
//!
//! Exit status: 0 when everything worked (every token opened; no breaking finding in `keys
//! diff`), 1 when a token was rejected or `keys diff` found a change that would lose users'
//! state, 2 on usage or configuration errors (for `keys diff`: a file that cannot be read or
//! is not a valid manifest), with a one-line message on stderr. Secrets are only ever printed
//! by `keygen`; error messages never contain key material.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use state_recovery::{
    ConfigError, EntryKind, KeyId, Location, ManualClock, Recovery, RecoveryBuilder, Salt,
};

mod state_recovery_cli {
    pub(crate) mod input;
    pub(crate) mod keys;
    pub(crate) mod manifest;
    pub(crate) mod open;
    pub(crate) mod seal;
}

use state_recovery_cli::{keys, manifest, open, seal};

/// Seal, open and inspect state-recovery tokens.
#[derive(Debug, Parser)]
#[command(name = "state-recovery", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a new `ID:KEY` line for STATE_RECOVERY_KEYS.
    Keygen {
        /// Key id (1 to 32 of [A-Za-z0-9_-]); default `k` and 8 random hex digits.
        #[arg(long)]
        id: Option<String>,
    },
    /// Print a fresh salt.
    Salt,
    /// Seal one JSON value read from stdin and print the token.
    Seal {
        #[command(flatten)]
        scope: ScopeArgs,
        /// Where the state is declared: MODULE@NAME[#INSTANCE] (a named key) or FILE:LINE:COLUMN[#INSTANCE].
        #[arg(long)]
        location: String,
        /// Revision of the entry.
        #[arg(long, default_value_t = 0)]
        rev: u64,
        /// The application's schema version for this state.
        #[arg(long, default_value_t = 1)]
        schema: u32,
        /// Seal an encrypted entry (format version 2) instead of a signed one.
        #[arg(long)]
        encrypted: bool,
    },
    /// Open tokens read from stdin, one per line (signed or encrypted); print one JSON line
    /// per token.
    Open {
        #[command(flatten)]
        scope: ScopeArgs,
        /// Only accept tokens sealed for this location (MODULE@NAME or FILE:LINE:COLUMN, optionally #INSTANCE).
        #[arg(long)]
        location: Option<String>,
    },
    /// Print the visible fields of one token read from stdin, without verifying it (of an
    /// encrypted entry, the header only: it is never decrypted).
    Inspect,
    /// Work with key manifests (the state keys an application declares).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Compare the key manifests of two releases; exit 1 if NEW would lose state OLD sealed.
    ///
    /// Prints one line per finding, then a summary. Breaking: dropped, unreadable,
    /// not-backward-compatible, namespace-changed. Informational: added, renamed,
    /// schema-changed.
    Diff {
        /// The manifest of the release running now (`-` for stdin).
        old: PathBuf,
        /// The manifest of the release to deploy (`-` for stdin).
        new: PathBuf,
        /// OLD and NEW never run side by side: NEW may write a schema version OLD cannot read.
        #[arg(long)]
        no_overlap: bool,
        /// Print one JSON object per finding per line, and nothing else.
        #[arg(long)]
        json: bool,
    },
}

/// Who the entries belong to, and when "now" is.
#[derive(Debug, clap::Args)]
struct ScopeArgs {
    /// The client's salt (22 characters of base64url).
    #[arg(long)]
    salt: String,
    /// The authenticated subject (user id) the entries are bound to.
    #[arg(long)]
    subject: Option<String>,
    /// Fix the clock at this Unix time (seconds) instead of reading the system clock.
    #[arg(long, value_name = "UNIX")]
    now: Option<u64>,
}

/// A failure that ends the program with exit status 2 and a one-line message on stderr.
#[derive(Debug)]
pub(crate) struct Fatal(String);

/// An id too long to be one.
fn is_long_id(problem: &ConfigError) -> bool {
    matches!(problem, ConfigError::InvalidKeyId { len } if *len > KeyId::MAX_LEN)
}

impl Fatal {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// A configuration error, worded so that it never repeats key material.
    pub(crate) fn config(context: &str, e: &ConfigError) -> Self {
        let detail = match e {
            // An id too long to be one is most likely a key written where the id belongs.
            ConfigError::KeyRingEntry { position, problem } if is_long_id(problem) => format!(
                "key ring entry {position}: the key id is longer than {} characters \
                 (is the entry written KEY:ID?)",
                KeyId::MAX_LEN
            ),
            other => other.to_string(),
        };
        Self(format!("{context}: {detail}"))
    }

    pub(crate) fn output(e: &io::Error) -> Self {
        Self(format!("writing output: {e}"))
    }

    pub(crate) fn input(e: &io::Error) -> Self {
        Self(format!("reading stdin: {e}"))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(Fatal(message)) => {
            // One line, whatever the message holds.
            let line = message.replace(['\n', '\r'], " ");
            let _ = writeln!(io::stderr().lock(), "state-recovery: {line}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<ExitCode, Fatal> {
    match command {
        Command::Keygen { id } => keys::keygen(id.as_deref()),
        Command::Salt => keys::salt(),
        Command::Seal {
            scope,
            location,
            rev,
            schema,
            encrypted,
        } => {
            let (recovery, salt) = configure(&scope)?;
            let location = parse_location(&location)?;
            let kind = if encrypted {
                EntryKind::Encrypted
            } else {
                recovery.entry_kind()
            };
            seal::seal(&recovery, kind, &scope.scope(&salt), &location, rev, schema)
        }
        Command::Open { scope, location } => {
            let (recovery, salt) = configure(&scope)?;
            let location = location.as_deref().map(parse_location).transpose()?;
            open::open(&recovery, &scope.scope(&salt), location.as_ref())
        }
        Command::Inspect => open::inspect(),
        Command::Keys {
            command:
                KeysCommand::Diff {
                    old,
                    new,
                    no_overlap,
                    json,
                },
        } => manifest::diff(&old, &new, no_overlap, json),
    }
}

impl ScopeArgs {
    fn scope<'a>(&'a self, salt: &'a Salt) -> state_recovery::Scope<'a> {
        state_recovery::Scope::new(salt).with_optional_subject(self.subject.as_deref())
    }
}

/// The recovery from the environment (with a fixed clock for `--now`) and the parsed salt.
fn configure(args: &ScopeArgs) -> Result<(Recovery, Salt), Fatal> {
    let mut builder =
        RecoveryBuilder::from_env().map_err(|e| Fatal::config("configuration", &e))?;
    if let Some(now) = args.now {
        builder = builder.clock(ManualClock::new(now));
    }
    let recovery = builder
        .build()
        .map_err(|e| Fatal::config("configuration", &e))?;
    let salt = Salt::decode(args.salt.trim()).map_err(|e| Fatal::config("--salt", &e))?;
    Ok((recovery, salt))
}

fn parse_location(text: &str) -> Result<Location, Fatal> {
    text.parse::<Location>()
        .map_err(|e| Fatal::config("--location", &e))
}
