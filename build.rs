//! Records the commit the binary is built from, for `statushook --version`
//! (`statushook 0.1.0 (commit 0123456789ab)`).
//!
//! The commit comes from `STATUSHOOK_GIT_COMMIT` when it is set (the image build and the
//! release workflow pass it: their sources have no `.git`), else from `git` when the crate
//! sits in a work tree of its own, else it is `unknown`. Cargo runs this script again only
//! when that variable, the checked-out branch or its commit changes, so an ordinary edit does
//! not rebuild anything more than it would without it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// As many hex digits as `git rev-parse --short=12` prints.
const SHORT: usize = 12;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=STATUSHOOK_GIT_COMMIT");
    let commit = from_environment()
        .or_else(from_git)
        .unwrap_or_else(|| "unknown".to_owned());
    let version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION");
    println!("cargo:rustc-env=BUILD_VERSION={version} (commit {commit})");
}

fn from_environment() -> Option<String> {
    let commit = std::env::var("STATUSHOOK_GIT_COMMIT").ok()?;
    let commit = commit.trim();
    (!commit.is_empty()).then(|| commit.chars().take(SHORT).collect())
}

fn from_git() -> Option<String> {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    // Only the crate's own work tree: a copy of the sources inside another repository (the
    // image's build context laid out under target/, say) must not take that one's commit.
    if !root.join(".git").exists() {
        return None;
    }
    // HEAD names the branch; the branch's file (or packed-refs) holds its commit. In a
    // worktree these live in different folders, which `--git-path` resolves.
    watch(&root, "HEAD");
    if let Some(branch) = git(&root, &["symbolic-ref", "-q", "HEAD"]) {
        watch(&root, &branch);
    }
    watch(&root, "packed-refs");
    git(&root, &["rev-parse", &format!("--short={SHORT}"), "HEAD"])
}

/// Reruns this script when the git file NAME changes, if it exists (a missing file would
/// make Cargo run the script on every build).
fn watch(root: &Path, name: &str) {
    if let Some(path) = git(root, &["rev-parse", "--git-path", name]) {
        let path = root.join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (output.status.success() && !text.is_empty()).then(|| text.to_owned())
}
