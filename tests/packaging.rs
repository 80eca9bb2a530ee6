//! The service as it ships: the systemd unit through the real `systemd-analyze
//! verify`, and the .deb built by the real `cargo deb`, checked by `lintian` and
//! installed with the real `dpkg` into a throwaway root (`--root`, its maintainer
//! scripts run with `DPKG_ROOT`), inside a test machine whose private `/run` shows no
//! running systemd: then upgraded, removed and purged.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use support::deb::build_deb;
use support::machine::Machine;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `systemd-analyze verify` of `unit` with its ExecStart pointing at `binary`: exit
/// status and everything it printed.
fn verify_unit(unit: &str, binary: &Path) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.service");
    let text = unit.replace("ExecStart=/usr/bin/berth ", &format!("ExecStart={} ", binary.display()));
    assert_ne!(text, unit, "the unit starts /usr/bin/berth");
    std::fs::write(&path, text).unwrap();
    let out =
        Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("systemd-analyze (package systemd)");
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), printed)
}

#[test]
fn the_unit_is_clean_for_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(repo().join("systemd/berth.service")).unwrap();
    let (ok, printed) = verify_unit(&unit, Path::new(env!("CARGO_BIN_EXE_berth")));
    assert!(ok && printed.trim().is_empty(), "systemd-analyze verify: {printed}");
    for line in [
        "Type=notify",
        "WatchdogSec=60",
        "Restart=always",
        "RestartSec=5",
        "StandardError=journal",
        "KillMode=mixed",
        "ProtectSystem=yes",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing");
    }
    // The check can fail: a typo in a directive is reported.
    let (ok, printed) =
        verify_unit(&unit.replace("WatchdogSec=60", "WatchdogSec=sixty"), Path::new(env!("CARGO_BIN_EXE_berth")));
    assert!(!ok || !printed.trim().is_empty(), "a broken unit passed");
}

/// The packaged binary is the daemon alone: `berth dev` is no command of it, and a
/// config with `test_jobs = true` is a config error (exit 2) naming the key.
fn assert_daemon_only(binary: &Path) {
    let dev = Command::new(binary).args(["dev", "--help"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&dev.stderr);
    assert_eq!(dev.status.code(), Some(2), "berth dev --help: {stderr}");
    assert!(stderr.contains("unrecognized subcommand 'dev'"), "{stderr}");
    let help = Command::new(binary).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("  run ") && !help.contains("  dev "), "{help}");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    let state = dir.path().join("state");
    std::fs::write(
        &config,
        format!(
            "server_id = \"s1\"\napi_key = \"k3y\"\ncontrol_plane_url = \"wss://cp.example.com/agent\"\n\
             state_dir = {state:?}\ntest_jobs = true\n"
        ),
    )
    .unwrap();
    let status = Command::new(binary).arg("status").arg("--config").arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert_eq!(status.status.code(), Some(2), "test_jobs = true: {stderr}");
    assert!(stderr.contains("key `test_jobs`") && stderr.contains("without the `test-jobs` feature"), "{stderr}");
    // The same config without the key is good: the refusal is the key's alone.
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap().replace("test_jobs = true\n", "")).unwrap();
    let status = Command::new(binary).arg("status").arg("--config").arg(&config).output().unwrap();
    assert_ne!(status.status.code(), Some(2), "{}", String::from_utf8_lossy(&status.stderr));
}

/// `dpkg --root=root args` inside the machine; panics with dpkg's words on failure.
fn dpkg(machine: &Machine, root: &Path, args: &[&str]) -> String {
    let mut all =
        vec![format!("--root={}", root.display()), "--force-script-chrootless".into(), "--force-depends".into()];
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = machine.run("/usr/bin/dpkg", &all);
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "dpkg {args:?}: {printed}");
    printed
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

#[test]
fn the_deb_passes_lintian_installs_upgrades_and_purges_in_a_throwaway_root() {
    let out = tempfile::tempdir().unwrap();
    let deb = build_deb(out.path(), "0.1.0-1");

    let lintian = Command::new("lintian").args(["--tag-display-limit", "0"]).arg(&deb).output().expect("lintian");
    let report = String::from_utf8_lossy(&lintian.stdout);
    assert!(lintian.status.success(), "lintian: {report}{}", String::from_utf8_lossy(&lintian.stderr));
    assert!(!report.lines().any(|l| l.starts_with("E:")), "lintian errors: {report}");

    let contents = Command::new("dpkg-deb").arg("--contents").arg(&deb).output().unwrap();
    let contents = String::from_utf8_lossy(&contents.stdout);
    assert!(!contents.contains("./etc/"), "nothing in /etc (no conffile holds a key): {contents}");

    let machine = Machine::start();
    let root = machine.dir.path().join("target-root");
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    dpkg(&machine, &root, &["--install", deb.to_str().unwrap()]);

    // Files and modes.
    let binary = root.join("usr/bin/berth");
    assert_eq!(mode(&binary), 0o755);
    let version = Command::new(&binary).arg("version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("berth {}", env!("CARGO_PKG_VERSION")));
    assert_daemon_only(&binary);
    let unit = root.join("usr/lib/systemd/system/berth.service");
    assert_eq!(mode(&unit), 0o644);
    assert_eq!(
        std::fs::read_to_string(&unit).unwrap(),
        std::fs::read_to_string(repo().join("systemd/berth.service")).unwrap()
    );
    let (ok, printed) = verify_unit(&std::fs::read_to_string(&unit).unwrap(), &binary);
    assert!(ok && printed.trim().is_empty(), "the installed unit: {printed}");
    for dir in ["etc/berth", "var/lib/berth"] {
        assert_eq!(mode(&root.join(dir)), 0o700, "{dir}");
        assert_eq!(std::fs::metadata(root.join(dir)).unwrap().uid(), 0);
    }
    assert!(!root.join("etc/berth/agent.toml").exists(), "the package ships no config");
    for file in [
        "usr/share/man/man1/berth.1.gz",
        "usr/share/man/man1/berth-doctor.1.gz",
        "usr/share/bash-completion/completions/berth",
        "usr/share/zsh/vendor-completions/_berth",
        "usr/share/fish/vendor_completions.d/berth.fish",
        "usr/share/doc/berth/templates/nginx-vhost.conf",
        "usr/share/doc/berth/examples/agent.toml",
        "usr/share/doc/berth/copyright",
    ] {
        assert_eq!(mode(&root.join(file)), 0o644, "{file}");
    }
    // Enabled for multi-user.target, as deb-systemd-helper does it.
    let wants = root.join("etc/systemd/system/multi-user.target.wants/berth.service");
    assert_eq!(std::fs::read_link(&wants).unwrap(), Path::new("/usr/lib/systemd/system/berth.service"));
    let status = dpkg(&machine, &root, &["--status", "berth"]);
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(!status.contains("Conffiles:"), "{status}");

    // An upgrade keeps the config and the state.
    std::fs::write(root.join("etc/berth/agent.toml"), "server_id = \"kept\"\n").unwrap();
    std::fs::write(root.join("var/lib/berth/outbox.log"), "kept\n").unwrap();
    let newer = build_deb(out.path(), "0.1.0-2");
    dpkg(&machine, &root, &["--install", newer.to_str().unwrap()]);
    assert!(dpkg(&machine, &root, &["--status", "berth"]).contains("Version: 0.1.0-2"));
    assert_eq!(std::fs::read_to_string(root.join("etc/berth/agent.toml")).unwrap(), "server_id = \"kept\"\n");
    assert_eq!(std::fs::read_to_string(root.join("var/lib/berth/outbox.log")).unwrap(), "kept\n");
    assert!(wants.symlink_metadata().is_ok(), "still enabled after the upgrade");

    // Remove keeps the config; purge takes it, the state and the unit's links.
    dpkg(&machine, &root, &["--remove", "berth"]);
    assert!(!binary.exists());
    assert!(root.join("etc/berth/agent.toml").exists());
    dpkg(&machine, &root, &["--purge", "berth"]);
    assert!(!root.join("etc/berth").exists() && !root.join("var/lib/berth").exists());
    assert!(wants.symlink_metadata().is_err(), "purge removes the enable link");
}

#[test]
fn shipped_shell_scripts_are_shellcheck_clean() {
    for script in
        ["packaging/installer", "packaging/debian/postinst", "packaging/debian/prerm", "packaging/debian/postrm"]
    {
        let out = Command::new("shellcheck").args(["-s", "sh"]).arg(repo().join(script)).output().expect("shellcheck");
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stdout));
        assert_eq!(mode(&repo().join(script)) & 0o111, 0o111, "{script} is executable");
    }
}
