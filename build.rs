//! Links the `berth` binary with packed relative relocations (`DT_RELR`, glibc 2.36,
//! Debian 12): the dynamic loader reads a few KiB of them at start instead of about
//! 400 KiB of `.rela.dyn`, pages of the binary that otherwise stay resident.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.contains("linux-gnu") {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo::rerun-if-changed=build.rs");
}
