//! The package as `cargo deb` builds it, for the tests that install it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the .deb as `cargo deb` does: cargo-deb builds the binary itself, with the
/// features `[package.metadata.deb]` gives (none: no `berth dev`, no `test.*` kinds),
/// in the dev profile and in a target dir of its own, so the binary of this test run
/// (with the default features, which the other tests use) is left alone.
pub fn build_deb(out: &Path, version: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("package");
    let result = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", &target)
        .args(["deb", "--locked", "--profile", "dev", "--fast", "--deb-version", version, "--output"])
        .arg(out)
        .output()
        .expect("cargo");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "cargo deb (install it: cargo install cargo-deb --locked): {stderr}");
    let deb = out.join(format!("berth_{version}_amd64.deb"));
    assert!(deb.exists(), "cargo deb made no {}: {stderr}", deb.display());
    deb
}
