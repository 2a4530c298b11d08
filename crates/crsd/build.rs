//! Names the git commit crsd is built from, for `crsd --version` (`CRSD_COMMIT`): twelve hex
//! digits, or "unknown" when there is no git or no repository (a source tarball). Never fails
//! the build.
//!
//! Cargo runs this again when HEAD moves: it watches the HEAD file and the file of the branch
//! HEAD names (or `packed-refs`, where git may keep it).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CRSD_COMMIT={commit}");
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        watch(&Path::new(&git_dir).join("HEAD"));
        let common = git(&["rev-parse", "--git-common-dir"])
            .map(|c| absolute(&c))
            .unwrap_or_else(|| PathBuf::from(&git_dir));
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch(&common.join(head_ref));
        }
        watch(&common.join("packed-refs"));
    }
}

/// Watches `path` if it exists (a missing path would make cargo run this on every build).
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// `git` run in this crate's folder; its trimmed output, None on any failure.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// A path git printed, relative to this crate's folder when it is not absolute.
fn absolute(p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() {
        p
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
    }
}
