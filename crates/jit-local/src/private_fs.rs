//! Files and directories of the data directory, readable by their owner
//! only: `0600` files, `0700` directories, whatever the process umask.
//!
//! The data directory holds the API key, the link-signing key, the request
//! store (task tokens), the outbox (approval links) and the local IAM state:
//! nothing another user of the machine should read. Every file `jit-local`
//! creates there goes through here with its mode set explicitly, and
//! existing files and directories are tightened when they are opened (a
//! data dir from an older build, a copied one). SQLite creates a database's
//! `-wal` and `-shm` itself, with the database file's own permissions, so
//! the database files are created `0600` here before SQLite opens them.
//! `main` also sets the umask to `077` as a second line.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// The mode of every file in the data directory.
pub const FILE_MODE: u32 = 0o600;
/// The mode of every directory in the data directory.
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` (and missing parents) `0700`, and tightens it to `0700`
/// when it already exists.
pub fn dir(dir: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(DIR_MODE);
    }
    b.create(dir)?;
    set_mode(dir, DIR_MODE)
}

/// Options that create a file `0600` (the umask can only take bits away).
pub fn options() -> OpenOptions {
    let mut opts = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(FILE_MODE);
    }
    opts
}

/// Opens `path` with `opts` (from [`options`]) and makes sure the file is
/// `0600`, also when it existed before with a wider mode.
pub fn open(path: &Path, opts: &OpenOptions) -> io::Result<File> {
    let f = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if f.metadata()?.permissions().mode() & 0o777 != FILE_MODE {
            f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
        }
    }
    Ok(f)
}

/// Creates `path` empty if it does not exist, and makes it `0600` either
/// way; for files another library opens (SQLite databases).
pub fn file(path: &Path) -> io::Result<()> {
    open(path, options().write(true).create(true)).map(drop)
}

/// Makes `path` `0600` if it exists (a database's `-wal`/`-shm` left by an
/// older build).
pub fn tighten(path: &Path) -> io::Result<()> {
    match set_mode(path, FILE_MODE) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Writes `bytes` to a new or truncated `0600` file.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let mut f = open(path, options().write(true).create(true).truncate(true))?;
    f.write_all(bytes)
}

/// Creates a SQLite database file `0600` before SQLite opens it, so the
/// `-wal` and `-shm` SQLite creates next to it get the same mode; tightens
/// those two if an older run left them wider.
pub fn database(path: &Path) -> io::Result<()> {
    file(path)?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        tighten(Path::new(&name))?;
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if current != mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}
