//! The demo's key ring: `STATE_RECOVERY_KEYS` when set, else a development ring kept in a
//! local, git-ignored file so that a restarted worker still opens the page's entries.

use std::fs;
use std::io::{self, Write as _};
use std::path::Path;

use state_recovery::{KeyId, KeyRing, Pepper, RecoveryBuilder};

/// Where the development ring is kept (relative to the working directory; git-ignored).
pub(crate) const DEV_KEY_FILE: &str = ".state-recovery-dev-keys";

/// The recovery builder from the environment, falling back to the development key file.
pub(crate) fn builder() -> Result<RecoveryBuilder, Box<dyn std::error::Error>> {
    if std::env::var_os("STATE_RECOVERY_KEYS").is_some() {
        return Ok(RecoveryBuilder::from_env()?);
    }
    let spec = dev_ring(Path::new(DEV_KEY_FILE))?;
    eprintln!(
        "\n*** WARNING: STATE_RECOVERY_KEYS is not set: using the DEVELOPMENT key ring in {DEV_KEY_FILE}.\n\
         *** Anyone who can read that file can forge state. Never use it in production: set\n\
         *** STATE_RECOVERY_KEYS (generate a key with `state-recovery keygen`).\n"
    );
    // `from_lookup` wipes the copy it is handed; `spec` wipes itself when dropped.
    Ok(RecoveryBuilder::from_lookup(|name| {
        if name == "STATE_RECOVERY_KEYS" {
            Some(spec.to_string())
        } else {
            std::env::var(name).ok()
        }
    })?)
}

/// Reads the development ring from `path`, creating it once. Creation is atomic (written to a
/// private temporary file, then hard-linked into place), so workers started together agree on
/// one ring.
fn dev_ring(path: &Path) -> Result<zeroize::Zeroizing<String>, Box<dyn std::error::Error>> {
    match fs::read_to_string(path).map(zeroize::Zeroizing::new) {
        Ok(s) => return Ok(s.trim().to_owned().into()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display()).into()),
    }
    let ring = KeyRing::single(KeyId::new("dev")?, Pepper::generate())?;
    let spec = ring.expose_spec();
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(spec.as_bytes())
            .and_then(|()| f.write_all(b"\n"))
    });
    let linked = written.and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            eprintln!("created a development key ring in {}", path.display());
            Ok(spec)
        }
        // Another worker created it first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let s = zeroize::Zeroizing::new(fs::read_to_string(path)?);
            Ok(s.trim().to_owned().into())
        }
        Err(e) => Err(format!("cannot create {}: {e}", path.display()).into()),
    }
}
