//! Owners and modes put right over a tree that someone else controls
//! (`app.fix_permissions`), without following anything they planted.
//!
//! The tree is a hosted user's app directory: they may plant a symbolic link to
//! `/etc/shadow`, a hard link to a file of root's (where the kernel lets them:
//! `fs.protected_hardlinks = 0`), a fifo, a bind mount, or swap a directory for a
//! link while the walk runs. A `chown -R` would follow or change all of those, as
//! root. So:
//!
//! - every directory is opened from its parent's descriptor with
//!   [`crate::host::tree::open_child`]: never through a link, never onto another
//!   mount (`RESOLVE_NO_XDEV`, which sees bind mounts of the same filesystem too);
//!   its owner and mode are set on that descriptor;
//! - an entry that needs a change is opened `O_PATH | O_NOFOLLOW` (which opens a
//!   link itself, a fifo without blocking, and no device), looked at through that
//!   descriptor, and changed through it (`fchownat(AT_EMPTY_PATH)`, `chmod` of
//!   `/proc/self/fd/N`, which reaches the very inode opened): whatever is at its
//!   name a moment later, it is never touched; it too is opened with
//!   `RESOLVE_NO_XDEV`, as a single file can be bind-mounted onto a name in the
//!   tree (an `O_PATH` open would reach the mounted file: redteam17);
//! - symbolic links, fifos, sockets and devices are left as they are; so is a file
//!   with other names (a hard link) that is not already the user's: its other name
//!   may be anywhere, and changing it would change that file;
//! - an entry that is already right is only looked at (`fstatat`), so a rerun
//!   changes, and opens, nothing.

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fs::{self as rfs, AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Stat, Uid};
use rustix::io::Errno;
use serde::Serialize;

use crate::host::tree::{open_child, Dir, TreeError, MAX_DEPTH};

/// What the tree should look like.
#[derive(Debug, Clone)]
pub struct Policy {
    pub uid: u32,
    pub gid: u32,
    /// Every directory, the top one included.
    pub dir_mode: u32,
    /// Regular files.
    pub file_mode: u32,
    /// Regular files that had the owner's execute bit.
    pub exec_mode: u32,
    /// Regular files with one of these names (`wp-config.php`), wherever they are.
    pub private_names: &'static [&'static str],
    pub private_mode: u32,
    /// Whether a regular file of someone else's with a single name is given to
    /// the user (a root's `cp`). Only where users cannot link files they may not
    /// write ([`kernel_protects_hard_links`]): elsewhere it may be a hard link the
    /// user made to root's file (`/etc/shadow`) whose other name was since replaced
    /// by a rename, so that the user's is its only name (redteam17).
    pub others_files: bool,
    /// How many entries the walk looks at before it stops ([`Report::stopped`]):
    /// the user decides how big the tree is, and can keep it growing (or move
    /// walked directories ahead of the walk) while it runs.
    pub max_entries: u64,
}

/// Whether the kernel keeps users from linking files they could not write
/// (`fs.protected_hardlinks = 1`); false when it cannot be read.
pub fn kernel_protects_hard_links(sysctl: &std::path::Path) -> bool {
    std::fs::read_to_string(sysctl).is_ok_and(|value| value.trim() == "1")
}

/// What a walk did, and what it left alone and why.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Entries whose owner or mode changed.
    pub changed: u64,
    /// The walk stopped at [`Policy::max_entries`]; what it had not reached is as
    /// it was.
    pub stopped: bool,
    /// Entries that were already right.
    pub unchanged: u64,
    pub skipped: Skipped,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub symlinks: u64,
    /// Files with other names that are not the user's.
    pub hard_links: u64,
    /// Files of someone else's, left because [`Policy::others_files`] is false.
    pub others_files: u64,
    /// Fifos, sockets, devices.
    pub special: u64,
    /// Directories (and all below them) and files of another mount.
    pub mount_points: u64,
    /// Entries that changed or went while the walk looked at them.
    pub changed_meanwhile: u64,
    /// Directories deeper than the walk holds descriptors for.
    pub too_deep: u64,
}

impl Policy {
    /// The mode a regular file named `name` with mode `mode` should have.
    fn file(&self, name: &CStr, mode: u32) -> u32 {
        if self.private_names.iter().any(|private| private.as_bytes() == name.to_bytes()) {
            self.private_mode
        } else if mode & 0o100 != 0 {
            self.exec_mode
        } else {
            self.file_mode
        }
    }

    fn holds(&self, stat: &Stat, mode: u32) -> bool {
        stat.st_uid == self.uid && stat.st_gid == self.gid && stat.st_mode & 0o7777 == mode
    }
}

/// A directory being walked: its descriptor and its entries, read as the walk
/// goes. Not collected first: the user decides how many names a directory holds
/// and how long they are, and a walk holds a frame per level (1,024 levels of
/// directories of a million long names each would be gigabytes: redteam17).
struct Frame {
    fd: OwnedFd,
    path: PathBuf,
    entries: rfs::Dir,
}

impl Frame {
    fn new(fd: OwnedFd, path: PathBuf) -> Result<Frame, TreeError> {
        let entries = rfs::Dir::read_from(&fd).map_err(|e| TreeError::Io { path: path.clone(), source: e.into() })?;
        Ok(Frame { fd, path, entries })
    }

    /// The next name of the directory (not `.` or `..`), `None` at its end.
    fn next_name(&mut self) -> Result<Option<CString>, TreeError> {
        for entry in self.entries.by_ref() {
            let name =
                entry.map_err(|e| TreeError::Io { path: self.path.clone(), source: e.into() })?.file_name().to_owned();
            if name.as_bytes() != b"." && name.as_bytes() != b".." {
                return Ok(Some(name));
            }
        }
        Ok(None)
    }
}

/// Gives `top` and everything below it (on its mount) the owner and modes of
/// `policy`, as the module's header says.
pub fn fix_tree(top: &Dir, policy: &Policy) -> Result<Report, TreeError> {
    let mut report = Report::default();
    let fd = top.as_fd().try_clone_to_owned().map_err(|e| TreeError::Io { path: top.path().into(), source: e })?;
    fix_dir(fd.as_fd(), top.path(), policy, &mut report)?;
    let mut stack = vec![Frame::new(fd, top.path().to_owned())?];
    let mut seen = 0u64;
    loop {
        let depth = stack.len();
        let Some(frame) = stack.last_mut() else { break };
        let Some(name) = frame.next_name()? else {
            stack.pop();
            continue;
        };
        seen += 1;
        if seen > policy.max_entries {
            report.stopped = true;
            break;
        }
        let path = frame.path.join(OsStr::from_bytes(name.as_bytes()));
        let Ok(stat) = rfs::statat(&frame.fd, &*name, AtFlags::SYMLINK_NOFOLLOW) else {
            report.skipped.changed_meanwhile += 1;
            continue;
        };
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory if depth >= MAX_DEPTH => report.skipped.too_deep += 1,
            FileType::Directory => match open_child(frame.fd.as_fd(), &name, true) {
                Ok(fd) => {
                    fix_dir(fd.as_fd(), &path, policy, &mut report)?;
                    stack.push(Frame::new(fd, path)?);
                }
                Err(Errno::XDEV) => report.skipped.mount_points += 1,
                Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR | Errno::AGAIN) => report.skipped.changed_meanwhile += 1,
                Err(e) => return Err(TreeError::Io { path, source: e.into() }),
            },
            FileType::RegularFile if policy.holds(&stat, policy.file(&name, stat.st_mode)) => report.unchanged += 1,
            FileType::RegularFile => fix_file(frame.fd.as_fd(), &name, &path, policy, &mut report)?,
            FileType::Symlink => report.skipped.symlinks += 1,
            _ => report.skipped.special += 1,
        }
    }
    Ok(report)
}

/// Owner and mode of an opened directory, through its descriptor.
fn fix_dir(fd: BorrowedFd<'_>, path: &std::path::Path, policy: &Policy, report: &mut Report) -> Result<(), TreeError> {
    let io = |e: Errno| TreeError::Io { path: path.to_owned(), source: e.into() };
    let stat = rfs::fstat(fd).map_err(io)?;
    if policy.holds(&stat, policy.dir_mode) {
        report.unchanged += 1;
        return Ok(());
    }
    if stat.st_uid != policy.uid || stat.st_gid != policy.gid {
        rfs::fchown(fd, Some(Uid::from_raw(policy.uid)), Some(Gid::from_raw(policy.gid))).map_err(io)?;
    }
    rfs::fchmod(fd, Mode::from_raw_mode(policy.dir_mode)).map_err(io)?;
    report.changed += 1;
    Ok(())
}

/// Owner and mode of regular file `name` of `parent`, through an `O_PATH`
/// descriptor of it, when it is still a regular file and not another's hard link.
fn fix_file(
    parent: BorrowedFd<'_>,
    name: &CStr,
    path: &std::path::Path,
    policy: &Policy,
    report: &mut Report,
) -> Result<(), TreeError> {
    let io = |e: Errno| TreeError::Io { path: path.to_owned(), source: e.into() };
    let fd = match open_entry(parent, name) {
        Ok(fd) => fd,
        Err(Errno::XDEV) => {
            report.skipped.mount_points += 1;
            return Ok(());
        }
        Err(Errno::NOENT | Errno::LOOP | Errno::AGAIN) => {
            report.skipped.changed_meanwhile += 1;
            return Ok(());
        }
        Err(e) => return Err(io(e)),
    };
    let mut stat = rfs::fstat(&fd).map_err(io)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        report.skipped.changed_meanwhile += 1;
        return Ok(());
    }
    if stat.st_nlink > 1 && stat.st_uid != policy.uid {
        report.skipped.hard_links += 1;
        return Ok(());
    }
    if stat.st_uid != policy.uid && !policy.others_files {
        report.skipped.others_files += 1;
        return Ok(());
    }
    let mode = policy.file(name, stat.st_mode);
    if policy.holds(&stat, mode) {
        report.unchanged += 1;
        return Ok(());
    }
    if stat.st_uid != policy.uid || stat.st_gid != policy.gid {
        rfs::chownat(&fd, c"", Some(Uid::from_raw(policy.uid)), Some(Gid::from_raw(policy.gid)), AtFlags::EMPTY_PATH)
            .map_err(io)?;
        stat = rfs::fstat(&fd).map_err(io)?;
    }
    if stat.st_mode & 0o7777 != mode {
        // The descriptor's own link in /proc reaches the inode it holds, whatever is
        // at `name` now (there is no fchmod of an O_PATH descriptor).
        let proc_link = format!("/proc/self/fd/{}", fd.as_raw_fd());
        rfs::chmod(proc_link.as_str(), Mode::from_raw_mode(mode)).map_err(io)?;
    }
    report.changed += 1;
    Ok(())
}

/// An `O_PATH` descriptor of entry `name` of `parent` (a link itself, not what it
/// points to), refused with `XDEV` when the entry is a mount point: a single file
/// can be bind-mounted too, and `O_PATH` alone would open the mounted file (an
/// `/etc` file an admin shared into the tree).
fn open_entry(parent: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let resolve =
        ResolveFlags::NO_XDEV | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS | ResolveFlags::BENEATH;
    match rfs::openat2(parent, name, flags, Mode::empty(), resolve) {
        Err(Errno::NOSYS) => {}
        other => return other,
    }
    // No openat2 (Linux before 5.6): a mount of another filesystem is still seen.
    let fd = rfs::openat(parent, name, flags, Mode::empty())?;
    if rfs::fstat(&fd)?.st_dev != rfs::fstat(parent)?.st_dev {
        return Err(Errno::XDEV);
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    const USER: u32 = 4242;
    const POLICY: Policy = Policy {
        uid: USER,
        gid: USER,
        dir_mode: 0o750,
        file_mode: 0o640,
        exec_mode: 0o740,
        private_names: &["wp-config.php"],
        private_mode: 0o600,
        others_files: true,
        max_entries: 1_000_000,
    };

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Owner, group and mode of every entry below `dir` (not following links).
    fn modes(dir: &Path) -> BTreeMap<PathBuf, (u32, u32, u32)> {
        let mut out = BTreeMap::new();
        let mut todo = vec![dir.to_owned()];
        while let Some(d) = todo.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                if meta.is_dir() {
                    todo.push(path.clone());
                }
                out.insert(path, (meta.uid(), meta.gid(), meta.mode() & 0o7777));
            }
        }
        out
    }

    /// Root's files outside the tree: `other/shadow` (0600) and `other/bin/tool` (0755).
    fn outside(t: &Path) -> PathBuf {
        let other = t.join("other");
        std::fs::create_dir_all(other.join("bin")).unwrap();
        std::fs::write(other.join("shadow"), "root:secret").unwrap();
        chmod(&other.join("shadow"), 0o600);
        std::fs::write(other.join("bin/tool"), "#!/bin/sh").unwrap();
        chmod(&other.join("bin/tool"), 0o755);
        other
    }

    fn fix(top: &Path) -> Report {
        fix_tree(&Dir::open_trusted(top).unwrap(), &POLICY).unwrap()
    }

    #[test]
    fn owners_and_modes_are_set_and_a_rerun_changes_nothing() {
        let t = tempfile::tempdir().unwrap();
        let app = t.path().join("app");
        std::fs::create_dir_all(app.join("public/wp-content/uploads")).unwrap();
        for (file, mode) in [
            ("public/index.php", 0o666),
            ("public/wp-config.php", 0o644),
            ("public/deploy.sh", 0o755),
            ("public/setuid", 0o4755),
            ("public/wp-content/uploads/a.jpg", 0o600),
        ] {
            std::fs::write(app.join(file), "x").unwrap();
            chmod(&app.join(file), mode);
        }
        chmod(&app.join("public/wp-content"), 0o777);

        let first = fix(&app);
        assert_eq!((first.changed, first.unchanged), (9, 0), "{first:?}");
        let want = |file: &str, mode: u32| assert_eq!(modes(&app)[&app.join(file)], (USER, USER, mode), "{file}");
        want("public", 0o750);
        want("public/wp-content", 0o750);
        want("public/index.php", 0o640);
        want("public/wp-config.php", 0o600);
        want("public/deploy.sh", 0o740);
        want("public/setuid", 0o740);
        want("public/wp-content/uploads/a.jpg", 0o640);
        let top = std::fs::metadata(&app).unwrap();
        assert_eq!((top.uid(), top.mode() & 0o7777), (USER, 0o750));

        let again = fix(&app);
        assert_eq!((again.changed, again.unchanged), (0, 9), "a rerun changes nothing: {again:?}");
    }

    #[test]
    fn planted_links_fifos_and_hard_links_to_outside_files_are_left_alone() {
        let t = tempfile::tempdir().unwrap();
        let other = outside(t.path());
        let before = modes(&other);
        let app = t.path().join("app");
        std::fs::create_dir_all(app.join("public")).unwrap();
        std::os::unix::fs::symlink(other.join("shadow"), app.join("public/shadow-link")).unwrap();
        std::os::unix::fs::symlink(&other, app.join("public/dir-link")).unwrap();
        // Made by root here: the attack of a user where fs.protected_hardlinks is 0.
        std::fs::hard_link(other.join("shadow"), app.join("public/shadow-hard")).unwrap();
        std::fs::hard_link(other.join("bin/tool"), app.join("public/tool-hard")).unwrap();
        nix::unistd::mkfifo(&app.join("public/fifo"), nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
        chmod(&app.join("public/fifo"), 0o666);

        let report = fix(&app);
        assert_eq!(
            report.skipped,
            Skipped { symlinks: 2, hard_links: 2, special: 1, ..Skipped::default() },
            "{report:?}"
        );
        assert_eq!(modes(&other), before, "nothing outside the tree changed");
        let fifo = std::fs::symlink_metadata(app.join("public/fifo")).unwrap();
        assert_eq!((fifo.uid(), fifo.mode() & 0o7777), (0, 0o666), "the fifo is left alone");
        let link = std::fs::symlink_metadata(app.join("public/shadow-link")).unwrap();
        assert_eq!(link.uid(), 0, "the link itself is left alone");
    }

    /// Puts this test thread in a mount namespace of its own (private mounts, so
    /// nothing it mounts is seen outside) and gives back a `mount ARGS` runner.
    fn private_mounts() -> impl Fn(&[&str]) {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare (run the tests as root)");
        let mount = |args: &[&str]| assert!(std::process::Command::new("mount").args(args).status().unwrap().success());
        mount(&["--make-rprivate", "/"]);
        mount
    }

    #[test]
    fn a_bind_mount_in_the_tree_is_not_crossed() {
        let mount = private_mounts();
        let t = tempfile::tempdir().unwrap();
        let other = outside(t.path());
        let before = modes(&other);
        let app = t.path().join("app");
        std::fs::create_dir_all(app.join("mnt")).unwrap();
        mount(&["--bind", other.to_str().unwrap(), app.join("mnt").to_str().unwrap()]);
        let report = fix(&app);
        assert_eq!(report.skipped.mount_points, 1, "{report:?}");
        assert_eq!(modes(&other), before);
    }

    /// A tree bigger than [`Policy::max_entries`] (or one that keeps growing)
    /// stops the walk there, and says so.
    #[test]
    fn the_walk_stops_at_its_entry_budget() {
        let t = tempfile::tempdir().unwrap();
        let app = t.path().join("app");
        std::fs::create_dir_all(&app).unwrap();
        for i in 0..150 {
            std::fs::write(app.join(format!("f{i}")), "x").unwrap();
        }
        let small = Policy { max_entries: 100, ..POLICY };
        let report = fix_tree(&Dir::open_trusted(&app).unwrap(), &small).unwrap();
        assert!(report.stopped, "{report:?}");
        assert_eq!(report.changed + report.unchanged, 101, "the top and 100 entries: {report:?}");
        let whole = fix(&app);
        assert!(!whole.stopped, "{whole:?}");
    }

    /// Where the kernel lets users link any file (`fs.protected_hardlinks = 0`), a
    /// root file's only name may be a link the user made before its other name was
    /// replaced: root's files are not given away there (redteam17).
    #[test]
    fn an_orphaned_link_to_a_root_file_is_kept_where_the_kernel_lets_users_link_regression() {
        let t = tempfile::tempdir().unwrap();
        let other = outside(t.path());
        let app = t.path().join("app");
        std::fs::create_dir_all(&app).unwrap();
        std::fs::hard_link(other.join("shadow"), app.join("old-shadow")).unwrap();
        std::fs::write(other.join("shadow+"), "root:new").unwrap();
        std::fs::rename(other.join("shadow+"), other.join("shadow")).unwrap();
        let policy = Policy { others_files: false, ..POLICY };
        let report = fix_tree(&Dir::open_trusted(&app).unwrap(), &policy).unwrap();
        assert_eq!(report.skipped.others_files, 1, "{report:?}");
        let meta = std::fs::metadata(app.join("old-shadow")).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o600), "root's old file stays root's");
        let given = fix(&app);
        assert_eq!(given.changed, 1, "with others_files, a root's file is the user's: {given:?}");
        let sysctl = t.path().join("protected_hardlinks");
        std::fs::write(&sysctl, "1\n").unwrap();
        assert!(kernel_protects_hard_links(&sysctl));
        std::fs::write(&sysctl, "0\n").unwrap();
        assert!(!kernel_protects_hard_links(&sysctl));
        assert!(!kernel_protects_hard_links(&t.path().join("missing")));
    }

    /// A single file bind-mounted onto a name in the tree is another mount too
    /// (redteam17: it was chowned to the user through the `O_PATH` open).
    #[test]
    fn a_file_bind_mount_in_the_tree_is_not_crossed_regression() {
        let mount = private_mounts();
        let t = tempfile::tempdir().unwrap();
        let other = outside(t.path());
        let before = modes(&other);
        let app = t.path().join("app");
        std::fs::create_dir_all(&app).unwrap();
        std::fs::write(app.join("bound"), "").unwrap();
        mount(&["--bind", other.join("shadow").to_str().unwrap(), app.join("bound").to_str().unwrap()]);
        let report = fix(&app);
        assert_eq!(report.skipped.mount_points, 1, "{report:?}");
        assert_eq!(modes(&other), before);
    }

    /// While the walk runs again and again, another thread swaps a directory of
    /// the tree with a link to the outside directory (`renameat2(RENAME_EXCHANGE)`):
    /// nothing outside ever changes.
    #[test]
    fn swapping_a_directory_for_a_link_mid_walk_never_reaches_outside() {
        let t = tempfile::tempdir().unwrap();
        let other = outside(t.path());
        let before = modes(&other);
        let app = t.path().join("app");
        std::fs::create_dir_all(app.join("public/sub")).unwrap();
        for i in 0..50 {
            std::fs::write(app.join(format!("public/sub/f{i}")), "x").unwrap();
        }
        std::os::unix::fs::symlink(&other, app.join("public/decoy")).unwrap();
        let real = rfs::open(app.join("public/sub"), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let swapping = {
            let (stop, a, b) = (stop.clone(), app.join("public/sub"), app.join("public/decoy"));
            std::thread::spawn(move || {
                let mut swaps = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if rfs::renameat_with(rfs::CWD, &a, rfs::CWD, &b, rfs::RenameFlags::EXCHANGE).is_ok() {
                        swaps += 1;
                    }
                }
                swaps
            })
        };
        let dir = Dir::open_trusted(&app).unwrap();
        let mut links_seen = 0;
        for _ in 0..300 {
            // Undo the last round through a descriptor of the real directory, so
            // every round has something to change.
            for i in 0..50 {
                rfs::chmodat(&real, format!("f{i}").as_str(), Mode::from_raw_mode(0o666), AtFlags::empty()).unwrap();
            }
            rfs::fchmod(&real, Mode::from_raw_mode(0o777)).unwrap();
            links_seen += fix_tree(&dir, &POLICY).unwrap().skipped.symlinks;
        }
        stop.store(true, Ordering::Relaxed);
        let swaps = swapping.join().unwrap();
        assert!(swaps > 100 && links_seen > 0, "the race did not happen: {swaps} swaps, {links_seen} links met");
        assert_eq!(modes(&other), before, "the directory outside the tree was changed");
    }
}
