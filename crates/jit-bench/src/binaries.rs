//! Building the release binaries and measuring them on disk.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::elf;

/// The cargo that runs us (`cargo run` sets `CARGO`), else the one on PATH.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Where this workspace's build output goes (honours `CARGO_TARGET_DIR`
/// and `.cargo/config.toml`, as cargo itself does).
pub fn target_dir(root: &Path) -> anyhow::Result<PathBuf> {
    let out = Command::new(cargo())
        .current_dir(root)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed ({})", out.status);
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    v["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata has no target_directory")
}

/// `cargo build --release -p <package>`, once per package and never
/// together: building several packages in one invocation unifies their
/// features, and `request` would then be built with `jit-local`'s tokio
/// features, unlike the artifact `sam build` ships. Progress goes to our
/// stderr. Returns how long it took (short when up to date).
pub fn build_release(root: &Path, packages: &[&str]) -> anyhow::Result<Duration> {
    let t = Instant::now();
    for p in packages {
        eprintln!("jit-bench: cargo build --release -p {p}");
        let status = Command::new(cargo())
            .current_dir(root)
            .args(["build", "--release", "-p", p])
            .stdin(Stdio::null())
            .status()
            .context("running cargo build")?;
        if !status.success() {
            bail!("cargo build --release -p {p} failed ({status})");
        }
    }
    Ok(t.elapsed())
}

/// A binary as it would be shipped.
#[derive(Debug, Clone)]
pub struct BinaryInfo {
    pub path: PathBuf,
    pub size: u64,
    /// A `.symtab` section is present (the binary is not stripped).
    pub has_symtab: bool,
    /// Any `.debug_*` section is present.
    pub has_debug: bool,
    /// The largest sections, biggest first.
    pub largest_sections: Vec<elf::Section>,
    /// What `file` says, when `file` is installed.
    pub file_says: Option<String>,
}

pub fn inspect(path: &Path) -> anyhow::Result<BinaryInfo> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut sections =
        elf::sections(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let has_symtab = sections.iter().any(|s| s.name == ".symtab");
    let has_debug = sections.iter().any(|s| s.name.starts_with(".debug_"));
    sections.sort_by_key(|s| std::cmp::Reverse(s.size));
    sections.truncate(6);
    let file_says = Command::new("file")
        .arg("-b")
        .arg(path)
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    Ok(BinaryInfo {
        path: path.to_path_buf(),
        size: bytes.len() as u64,
        has_symtab,
        has_debug,
        largest_sections: sections,
        file_says,
    })
}

/// How many distinct crates a package links (normal dependencies, itself
/// included), per `cargo tree`. Informational; `None` if cargo tree fails.
pub fn crate_count(root: &Path, package: &str) -> Option<usize> {
    let out = Command::new(cargo())
        .current_dir(root)
        .args([
            "tree",
            "--offline",
            "-p",
            package,
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut names: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches(" (*)").trim())
        .filter(|l| !l.is_empty())
        .collect();
    names.sort_unstable();
    names.dedup();
    Some(names.len())
}

/// The `[profile.release]` settings of a workspace `Cargo.toml`, as they
/// read (`opt-level = "z"`, `lto = "fat"`, …), each in backticks; the
/// report quotes them so it cannot drift from the profile that built the
/// binaries. `None` when there is no such table.
pub fn release_profile(cargo_toml: &str) -> Option<String> {
    let mut lines = cargo_toml.lines().map(str::trim);
    lines.find(|l| *l == "[profile.release]")?;
    let settings: Vec<String> = lines
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| format!("`{l}`"))
        .collect();
    Some(settings.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_the_release_profile_and_nothing_else() {
        let toml = "[profile.dev]\ndebug = 1\n\n[profile.release]\nopt-level = \"z\"\n# why\nlto = \"fat\"\n\n[profile.bench]\ninherits = \"release\"\n";
        assert_eq!(
            release_profile(toml).as_deref(),
            Some("`opt-level = \"z\"`, `lto = \"fat\"`")
        );
        assert_eq!(release_profile("[workspace]\n"), None);
    }
}
