//! `keygen` and `salt`: fresh secrets from the operating system's CSPRNG.

use std::io::{self, Write};
use std::process::ExitCode;

use rand::rand_core::TryRngCore as _;
use state_recovery::{KeyId, Pepper, Salt};
use zeroize::Zeroizing;

use crate::Fatal;

/// Prints one `ID:KEY` line: the only command that ever prints a secret.
pub(crate) fn keygen(id: Option<&str>) -> Result<ExitCode, Fatal> {
    let id = match id {
        Some(id) => KeyId::new(id).map_err(|e| Fatal::config("--id", &e))?,
        None => default_id()?,
    };
    let pepper = Pepper::try_generate().map_err(|e| Fatal::config("keygen", &e))?;
    let mut line = Zeroizing::new(String::with_capacity(96));
    line.push_str(id.as_str());
    line.push(':');
    line.push_str(&pepper.expose_base64());
    line.push('\n');
    write_stdout(line.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Prints a fresh salt.
pub(crate) fn salt() -> Result<ExitCode, Fatal> {
    let salt = Salt::try_generate().map_err(|e| Fatal::config("salt", &e))?;
    let mut line = salt.encode();
    line.push('\n');
    write_stdout(line.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// `k` and 8 random lowercase hex digits.
fn default_id() -> Result<KeyId, Fatal> {
    let mut bytes = [0u8; 4];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|_| Fatal::new("the operating system's random source failed"))?;
    let id = format!("k{:08x}", u32::from_be_bytes(bytes));
    KeyId::new(&id).map_err(|e| Fatal::config("keygen", &e))
}

fn write_stdout(bytes: &[u8]) -> Result<(), Fatal> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Fatal::output(&e))
}
