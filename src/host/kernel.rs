//! Is the running kernel the newest installed one? (needrestart's kernel check, the
//! sane subset.) A security update of the kernel is only live after a reboot, and
//! Debian does not always leave `/run/reboot-required` behind for it.
//!
//! Like needrestart's `NeedRestart::Kernel::Linux`: every `/boot/vmlinu*` image of at
//! least 1 MB gives its version string, read from the image itself (the x86 boot
//! header's `kernel_version` pointer, at 0x20e, to a NUL-terminated string such as
//! `6.1.0-18-amd64 (debian-kernel@lists.debian.org) #1 SMP … Debian 6.1.76-1 (2024-02-01)`),
//! else taken from the file name (`vmlinuz-6.1.0-18-amd64`). Its first word is the
//! release. A reboot is owed when
//! * the newest release by Debian version order is newer than the running one
//!   (`/proc/sys/kernel/osrelease`, what `uname -r` says); a running kernel newer than
//!   every image (a custom or a container's host kernel) owes nothing; or
//! * the image of the running release was rebuilt in place (same ABI name): its header's
//!   string no longer contains the running build (`/proc/sys/kernel/version`, `uname -v`).
//!
//! Every path is under `root`; /boot and /proc are root's, never a hosted user's.

use std::cmp::Ordering;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// needrestart's least size of a kernel image: smaller files are not images.
const MIN_IMAGE: u64 = 1_000_000;

/// One installed kernel image's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The release, e.g. `6.1.0-18-amd64`.
    pub release: String,
    /// The whole string of the boot header (`None` when only the file name told the release).
    pub build: Option<String>,
}

/// What the kernel check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelCheck {
    pub running: String,
    /// The newest installed release (`None`: no image found, nothing owed).
    pub newest: Option<String>,
    pub reboot: bool,
}

/// The running kernel against the images in `<root>/boot`; `None` when the running
/// release cannot be read.
pub fn check(root: &Path) -> Option<KernelCheck> {
    let read = |path: &str| std::fs::read_to_string(root.join(path)).ok().map(|s| s.trim().to_owned());
    let running = read("proc/sys/kernel/osrelease").filter(|r| !r.is_empty())?;
    let build = read("proc/sys/kernel/version").unwrap_or_default();
    Some(judge(&running, &build, &images(&root.join("boot"))))
}

/// Whether `images` owe a reboot to a kernel running `release` built as `build`.
pub fn judge(release: &str, build: &str, images: &[Image]) -> KernelCheck {
    let newest = images.iter().map(|i| i.release.as_str()).max_by(|a, b| debian_cmp(a, b)).map(str::to_owned);
    let newer = newest.as_deref().is_some_and(|n| debian_cmp(n, release) == Ordering::Greater);
    let rebuilt = !build.is_empty()
        && images
            .iter()
            .filter(|i| i.release == release)
            .filter_map(|i| i.build.as_deref())
            .any(|header| !header.contains(build));
    KernelCheck { running: release.to_owned(), newest, reboot: newer || rebuilt }
}

/// The kernel images in `boot` (`vmlinu*`, links followed, at least [`MIN_IMAGE`] bytes).
pub fn images(boot: &Path) -> Vec<Image> {
    let Ok(entries) = std::fs::read_dir(boot) else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("vmlinu") {
            continue;
        }
        let path = entry.path();
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() && meta.len() >= MIN_IMAGE => {}
            _ => continue,
        }
        let image = match header_version(&path) {
            Some(header) => {
                let header = header.strip_prefix("Linux version ").unwrap_or(&header).to_owned();
                let release = header.split_whitespace().next().unwrap_or_default().to_owned();
                Image { release, build: Some(header) }
            }
            None => match name.split_once('-').map(|(_, v)| v).filter(|v| starts_with_version(v)) {
                Some(release) => Image { release: release.to_owned(), build: None },
                None => continue,
            },
        };
        if !found.contains(&image) {
            found.push(image);
        }
    }
    found
}

/// The x86 boot header's kernel version string, if the image has that header
/// ("HdrS" at 0x202) and the string looks like a version.
fn header_version(path: &Path) -> Option<String> {
    let mut file = File::open(path).ok()?;
    let mut magic = [0u8; 4];
    file.seek(SeekFrom::Start(0x202)).ok()?;
    file.read_exact(&mut magic).ok()?;
    if &magic != b"HdrS" {
        return None;
    }
    let mut pointer = [0u8; 2];
    file.seek(SeekFrom::Start(0x20e)).ok()?;
    file.read_exact(&mut pointer).ok()?;
    file.seek(SeekFrom::Start(0x200 + u64::from(u16::from_le_bytes(pointer)))).ok()?;
    let mut buf = Vec::with_capacity(128);
    file.take(128).read_to_end(&mut buf).ok()?;
    let text = &buf[..buf.iter().position(|b| *b == 0).unwrap_or(buf.len())];
    let text = std::str::from_utf8(text).ok()?.trim();
    starts_with_version(text).then(|| text.to_owned())
}

/// `^\d+\.\d+`.
fn starts_with_version(s: &str) -> bool {
    let (major, rest) = s.split_at(s.bytes().take_while(u8::is_ascii_digit).count());
    let minor = rest.strip_prefix('.').unwrap_or_default();
    !major.is_empty() && minor.bytes().next().is_some_and(|b| b.is_ascii_digit())
}

/// Debian's version order (dpkg's `verrevcmp`) of two strings: non-digit runs compare
/// with `~` before the end before letters before other characters, digit runs
/// compare as numbers.
pub fn debian_cmp(a: &str, b: &str) -> Ordering {
    fn order(c: Option<u8>) -> i32 {
        match c {
            None => 0,
            Some(b'~') => -1,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => i32::from(c),
            Some(c) => i32::from(c) + 256,
        }
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let digit = |s: &[u8], i: usize| s.get(i).is_some_and(u8::is_ascii_digit);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (x, y) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if x != y {
                return x.cmp(&y);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first == Ordering::Equal {
                first = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first != Ordering::Equal {
            return first;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Write;

    use super::*;

    const BUILD_76: &str = "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)";
    const BUILD_85: &str = "#1 SMP PREEMPT_DYNAMIC Debian 6.1.85-1 (2024-04-11)";

    /// A fake bzImage of 1 MiB (sparse) whose boot header points at `version`.
    fn bzimage(path: &Path, version: &str) {
        let mut file = File::create(path).unwrap();
        file.set_len(1 << 20).unwrap();
        file.seek(SeekFrom::Start(0x202)).unwrap();
        file.write_all(b"HdrS").unwrap();
        file.seek(SeekFrom::Start(0x20e)).unwrap();
        file.write_all(&0x3a00u16.to_le_bytes()).unwrap();
        file.seek(SeekFrom::Start(0x3c00)).unwrap();
        file.write_all(version.as_bytes()).unwrap();
        file.write_all(b"\0garbage after the end").unwrap();
    }

    fn root(running: &str, build: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("proc/sys/kernel")).unwrap();
        fs::create_dir_all(root.path().join("boot")).unwrap();
        fs::write(root.path().join("proc/sys/kernel/osrelease"), format!("{running}\n")).unwrap();
        fs::write(root.path().join("proc/sys/kernel/version"), format!("{build}\n")).unwrap();
        root
    }

    fn header(release: &str, build: &str) -> String {
        format!("{release} (debian-kernel@lists.debian.org) {build}")
    }

    #[test]
    fn debian_version_order() {
        use Ordering::*;
        for (a, b, want) in [
            ("6.1.0-18-amd64", "6.1.0-9-amd64", Greater),
            ("6.1.0-18-amd64", "6.1.0-18-amd64", Equal),
            ("6.8.0-100-generic", "6.8.0-45-generic", Greater),
            ("6.10.0-1-amd64", "6.9.0-3-amd64", Greater),
            ("6.1.0-18-cloud-amd64", "6.1.0-18-amd64", Greater),
            ("5.10.0-28-amd64", "6.1.0-18-amd64", Less),
            ("6.1~rc1", "6.1", Less),
            ("6.1", "6.1+b1", Less),
            ("6.01", "6.1", Equal),
            ("", "1", Less),
        ] {
            assert_eq!(debian_cmp(a, b), want, "{a} vs {b}");
            assert_eq!(debian_cmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn up_to_date_kernel_owes_nothing() {
        let root = root("6.1.0-18-amd64", BUILD_76);
        bzimage(&root.path().join("boot/vmlinuz-6.1.0-18-amd64"), &header("6.1.0-18-amd64", BUILD_76));
        bzimage(&root.path().join("boot/vmlinuz-6.1.0-9-amd64"), &header("6.1.0-9-amd64", BUILD_76));
        fs::write(root.path().join("boot/vmlinuz-6.1.0-99-amd64.bak"), "too small to be an image").unwrap();
        let check = check(root.path()).unwrap();
        assert_eq!(check.newest.as_deref(), Some("6.1.0-18-amd64"));
        assert!(!check.reboot, "{check:?}");
    }

    #[test]
    fn a_newer_image_owes_a_reboot_read_from_the_header_not_the_name() {
        let root = root("6.1.0-9-amd64", BUILD_76);
        bzimage(&root.path().join("boot/vmlinuz-6.1.0-9-amd64"), &header("6.1.0-9-amd64", BUILD_76));
        // The file's name lies; the header says what it is.
        bzimage(&root.path().join("boot/vmlinuz-6.1.0-2-amd64"), &header("6.1.0-18-amd64", BUILD_85));
        let check = check(root.path()).unwrap();
        assert_eq!(check.newest.as_deref(), Some("6.1.0-18-amd64"));
        assert!(check.reboot);
    }

    #[test]
    fn the_running_image_rebuilt_in_place_owes_a_reboot() {
        let root = root("6.1.0-18-amd64", BUILD_76);
        bzimage(&root.path().join("boot/vmlinuz-6.1.0-18-amd64"), &header("6.1.0-18-amd64", BUILD_85));
        let check = check(root.path()).unwrap();
        assert_eq!(check.newest.as_deref(), Some("6.1.0-18-amd64"));
        assert!(check.reboot, "same release, another build: {check:?}");
    }

    #[test]
    fn names_tell_the_release_when_there_is_no_boot_header() {
        let root = root("6.8.0-45-generic", "#45-Ubuntu SMP");
        for name in ["vmlinuz-6.8.0-45-generic", "vmlinuz-6.8.0-100-generic"] {
            File::create(root.path().join("boot").join(name)).unwrap().set_len(MIN_IMAGE).unwrap();
        }
        // The usual links to the newest and the previous image, and a name with no version.
        std::os::unix::fs::symlink("vmlinuz-6.8.0-100-generic", root.path().join("boot/vmlinuz")).unwrap();
        std::os::unix::fs::symlink("vmlinuz-6.8.0-45-generic", root.path().join("boot/vmlinuz.old")).unwrap();
        File::create(root.path().join("boot/vmlinux-custom")).unwrap().set_len(MIN_IMAGE).unwrap();
        let images = images(&root.path().join("boot"));
        assert_eq!(images.len(), 2, "{images:?}");
        assert!(images.iter().all(|i| i.build.is_none()));
        let check = check(root.path()).unwrap();
        assert_eq!(check.newest.as_deref(), Some("6.8.0-100-generic"));
        assert!(check.reboot);
    }

    #[test]
    fn no_images_or_a_newer_running_kernel_owe_nothing() {
        let root = root("6.18.44-custom", "#1 SMP");
        let found = check(root.path()).unwrap();
        assert_eq!((found.newest, found.reboot), (None, false));
        bzimage(&root.path().join("boot/vmlinuz-6.1.0-18-amd64"), &header("6.1.0-18-amd64", BUILD_76));
        assert!(!check_reboot(root.path()), "a custom kernel newer than every image");
        assert!(check(tempfile::tempdir().unwrap().path()).is_none(), "no /proc: unknown");
    }

    fn check_reboot(root: &Path) -> bool {
        check(root).unwrap().reboot
    }

    #[test]
    fn garbage_headers_fall_back_to_the_name() {
        let root = root("6.1.0-18-amd64", BUILD_76);
        bzimage(&root.path().join("boot/vmlinuz-6.1.0-20-amd64"), "not a version \u{1}");
        let images = images(&root.path().join("boot"));
        assert_eq!(images, [Image { release: "6.1.0-20-amd64".into(), build: None }]);
        assert!(check_reboot(root.path()));
    }
}
