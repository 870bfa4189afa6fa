//! The local stand-ins for IAM (attachments, revoke denies) keep their state
//! in small JSON files in the data directory: read whole at start, replaced
//! whole on every change — written to a temporary file, synced, then renamed
//! over the old one — so a crash leaves the old state or the new, never half
//! of one.

use std::io::Write as _;
use std::path::Path;

use jit_core::ports::GrantError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The file's value; the type's default when there is no file yet.
pub(crate) fn load<T: DeserializeOwned + Default>(path: &Path) -> std::io::Result<T> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e),
    }
}

/// Replaces the file's value (see the module doc).
pub(crate) fn replace<T: Serialize>(path: &Path, value: &T) -> Result<(), GrantError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| GrantError::Other(e.to_string()))?;
    let tmp = path.with_extension("json.tmp");
    let written = crate::private_fs::open(
        &tmp,
        crate::private_fs::options()
            .write(true)
            .create(true)
            .truncate(true),
    )
    .and_then(|mut f| {
        f.write_all(&bytes)?;
        f.sync_all()
    })
    .and_then(|_| std::fs::rename(&tmp, path));
    written.map_err(|e| GrantError::Transient(format!("writing {}: {e}", path.display())))
}
