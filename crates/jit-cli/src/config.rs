//! `jit configure`: where the API is and who we are, stored once under the
//! user's config dir with mode 0600 (it holds the API key and any token).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", tag = "mode")]
pub enum Auth {
    /// jit-local: the identity headers `x-jit-user` / `x-jit-groups`.
    Local { user: String, groups: Vec<String> },
    /// `Authorization: Bearer <token>` (a JWT authorizer).
    Bearer { token: String },
    /// SigV4 (`execute-api`) with the user's base AWS credentials.
    Sigv4 {
        region: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
    },
    /// Only the API key (a trusted caller).
    ApiKeyOnly,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    pub api_url: String,
    /// Empty when `api_key_file` names where the key is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_key: String,
    /// `jit configure --local`: jit-local's `<data-dir>/api-key`, read at
    /// every run instead of copied, so the CLI follows the server's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<PathBuf>,
    pub auth: Auth,
}

fn env_dir(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn home() -> Option<PathBuf> {
    env_dir("HOME")
}

/// `$JIT_CONFIG_DIR`, else `$XDG_CONFIG_HOME/jit`, else `~/.config/jit`.
pub fn config_dir() -> Result<PathBuf> {
    env_dir("JIT_CONFIG_DIR")
        .or_else(|| env_dir("XDG_CONFIG_HOME").map(|d| d.join("jit")))
        .or_else(|| home().map(|h| h.join(".config").join("jit")))
        .ok_or_else(|| anyhow!("no config directory: set HOME or JIT_CONFIG_DIR"))
}

/// `$JIT_CACHE_DIR`, else `$XDG_CACHE_HOME/jit`, else `~/.cache/jit`.
pub fn cache_dir() -> Result<PathBuf> {
    env_dir("JIT_CACHE_DIR")
        .or_else(|| env_dir("XDG_CACHE_HOME").map(|d| d.join("jit")))
        .or_else(|| home().map(|h| h.join(".cache").join("jit")))
        .ok_or_else(|| anyhow!("no cache directory: set HOME or JIT_CACHE_DIR"))
}

pub fn config_path() -> Result<PathBuf> {
    Ok(config_dir()?.join("config.json"))
}

impl Config {
    pub fn load() -> Result<Config> {
        let path = config_path()?;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(anyhow!(
                    "not configured ({} does not exist): run `jit configure --api-url <url> --api-key <key>`",
                    path.display()
                ));
            }
            Err(e) => return Err(anyhow!("cannot read {}: {e}", path.display())),
        };
        serde_json::from_str(&text).map_err(|e| {
            anyhow!(
                "{} is not a valid jit configuration ({e}): run `jit configure` again",
                path.display()
            )
        })
    }

    /// The API key: the stored one, or the current content of
    /// `api_key_file`.
    pub fn key(&self) -> Result<String> {
        match &self.api_key_file {
            None => Ok(self.api_key.clone()),
            Some(path) => read_key_file(path),
        }
    }

    pub fn save(&self) -> Result<PathBuf> {
        let path = config_path()?;
        let text = serde_json::to_string_pretty(self)?;
        write_private(&path, text.as_bytes())?;
        Ok(path)
    }
}

/// Reads jit-local's key file, naming the file and the fix when it is
/// missing or empty.
pub fn read_key_file(path: &Path) -> Result<String> {
    let key = std::fs::read_to_string(path).map_err(|e| {
        anyhow!(
            "cannot read jit-local's API key from {} ({e}): start jit-local (it writes the key there), or run `jit configure --local --data-dir <its data dir>`",
            path.display()
        )
    })?;
    let key = key.trim().to_string();
    if key.is_empty() {
        return Err(anyhow!(
            "{} is empty: restart jit-local (it writes the key there)",
            path.display()
        ));
    }
    Ok(key)
}

/// Writes a file readable by its owner only (0600), creating its directory
/// (0700), through a temporary file renamed into place.
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("{} has no directory", path.display()))?;
    create_private_dir(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("config.json");
        let cfg = Config {
            api_url: "http://127.0.0.1:3000".into(),
            api_key: "k".repeat(20),
            api_key_file: None,
            auth: Auth::Local {
                user: "a@example.com".into(),
                groups: vec!["sre".into()],
            },
        };
        write_private(&path, serde_json::to_string(&cfg).unwrap().as_bytes()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let back: Config = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn a_key_file_is_read_at_every_use() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("api-key");
        let cfg = Config {
            api_url: "http://127.0.0.1:3000".into(),
            api_key: String::new(),
            api_key_file: Some(file.clone()),
            auth: Auth::ApiKeyOnly,
        };
        let err = cfg.key().unwrap_err().to_string();
        assert!(
            err.contains("api-key") && err.contains("start jit-local"),
            "{err}"
        );
        std::fs::write(&file, "first-key-0123456789\n").unwrap();
        assert_eq!(cfg.key().unwrap(), "first-key-0123456789");
        std::fs::write(&file, "second-key-0123456789\n").unwrap();
        assert_eq!(cfg.key().unwrap(), "second-key-0123456789");
        let text = serde_json::to_string(&cfg).unwrap();
        assert!(
            !text.contains("apiKey\""),
            "no copied key is stored: {text}"
        );
    }
}
