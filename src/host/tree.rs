//! Directories in trees that someone else controls, changed without following links.
//!
//! A hosted user owns `/srv/users/NAME` and everything below it, and can change any
//! of it at any moment, also while a job runs: plant a symbolic link (`apps` ->
//! `/etc`), a hard link to a file that is not theirs, a fifo, or swap a directory
//! with a link between two of berth's calls (`renameat2(RENAME_EXCHANGE)`). Calls
//! that take a full path (`chown("/srv/users/derek/apps/shop")`, `remove_dir_all`)
//! resolve every component again, follow whatever the user put there, and so land
//! outside the user's tree, as root. A check before the call does not help: the
//! user changes the tree between the check and the call.
//!
//! So every operation here is relative to a directory file descriptor, and every
//! descriptor is opened one component at a time from a trusted, root-owned anchor
//! with `openat2(RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH)` (and `O_NOFOLLOW |
//! O_DIRECTORY`): a link is never followed, only refused or removed itself. Owner and
//! mode are set with `fchown`/`fchmod` on the opened descriptor, so they reach the
//! directory that was opened, whatever now sits at its name; entries are created and
//! removed with `mkdirat`/`unlinkat` relative to their parent's descriptor. A user
//! can still move their own directories around while berth works in them; what
//! berth does then lands in those directories, which are theirs anyway, never
//! outside the tree.
//!
//! [`Dir::remove_tree`] also never crosses a mount point (`RESOLVE_NO_XDEV`, which
//! sees bind mounts too): what is mounted inside a user's tree is left in place.

use std::ffi::{CStr, CString, OsStr};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{self as rfs, AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Uid};
use rustix::io::Errno;

/// What [`TreeError::Planted`] says for a symbolic link.
pub const SYMLINK: &str = "a symbolic link";

/// How many times one name is tried again when it keeps changing under berth
/// (a directory that refills, an entry swapped between a file and a directory).
const ROUNDS: u32 = 16;
/// How deep [`Dir::remove_tree`] goes; it holds one descriptor per level.
pub const MAX_DEPTH: usize = 1024;

/// Every directory is opened with these: never through a link, never blocking
/// (an `O_DIRECTORY` open of a fifo or device fails before it could block).
const DIR_FLAGS: OFlags =
    OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC).union(OFlags::NONBLOCK);

/// Why a directory could not be made, opened or removed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// Something other than a directory is where one belongs: `what` is
    /// [`SYMLINK`], "a regular file", "a fifo", ... Nothing was changed there.
    #[error("{} is {what}, not what berth expects there", path.display())]
    Planted { path: PathBuf, what: &'static str },
    /// [`Dir::remove_tree`] met a mount point here and left it (and what is below
    /// it, and the directories above it) in place.
    #[error("{} is a mount point; berth does not remove anything across it", path.display())]
    MountPoint { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl TreeError {
    /// True for an [`TreeError::Io`] saying the path does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, TreeError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    fn io(path: &Path, source: impl Into<std::io::Error>) -> Self {
        TreeError::Io { path: path.to_owned(), source: source.into() }
    }

    fn other(path: &Path, message: &str) -> Self {
        TreeError::io(path, std::io::Error::other(message))
    }
}

/// A directory opened without following links; `path` is for messages only (it
/// is where the directory was when opened, and is never resolved again).
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Debug for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Dir").field(&self.path).finish()
    }
}

impl Dir {
    /// Opens an absolute trusted path (from code, e.g. `root.join("srv/users")`,
    /// never from job input) component by component from `/`, following no link:
    /// a symbolic link anywhere on it is [`TreeError::Planted`], a missing component
    /// an `Io` error whose [`TreeError::is_not_found`] is true.
    pub fn open_trusted(path: &Path) -> Result<Dir, TreeError> {
        Dir::walk_trusted(path, false).map(|(dir, _)| dir)
    }

    /// [`Dir::open_trusted`], creating what is missing: parents as root-owned
    /// directories with mode 0755 (left as they are when present), and the last
    /// component as with [`Dir::ensure_dir`] (exactly `mode`, `uid:gid`). True when
    /// anything changed.
    pub fn ensure_trusted(path: &Path, mode: u32, uid: u32, gid: u32) -> Result<(Dir, bool), TreeError> {
        let (dir, created) = Dir::walk_trusted(path, true)?;
        let changed = dir.set_owner_and_mode(mode, uid, gid)?;
        Ok((dir, created || changed))
    }

    fn walk_trusted(path: &Path, create: bool) -> Result<(Dir, bool), TreeError> {
        if !path.is_absolute() {
            return Err(TreeError::io(path, std::io::Error::from(std::io::ErrorKind::InvalidInput)));
        }
        let root = rfs::openat(rfs::CWD, c"/", DIR_FLAGS, Mode::empty()).map_err(|e| TreeError::io(path, e))?;
        let mut dir = Dir { fd: root, path: PathBuf::from("/") };
        let mut created = false;
        for component in path.components() {
            let name = match component {
                Component::RootDir | Component::CurDir => continue,
                Component::Normal(name) => name,
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(TreeError::other(path, "a trusted path must not contain '..'"))
                }
            };
            let name = CString::new(name.as_bytes()).map_err(|e| TreeError::io(path, std::io::Error::other(e)))?;
            let (next, made) = dir.child(&name, create.then_some(0o755))?;
            (dir, created) = (next, created || made);
        }
        Ok((dir, created))
    }

    /// Makes child directory `name` (one component: no '/', not '.', not '..', not
    /// empty) exist with exactly `mode` and owner `uid:gid` (`fchown`/`fchmod` on the
    /// opened descriptor); returns it and whether anything changed. A symbolic link,
    /// or anything else that is not a directory, in its place is
    /// [`TreeError::Planted`], and nothing is changed.
    ///
    /// A new directory is made with mode 0700 and root's owner, then given its owner
    /// and mode through its descriptor: it is never open to others in between.
    pub fn ensure_dir(&self, name: &str, mode: u32, uid: u32, gid: u32) -> Result<(Dir, bool), TreeError> {
        let (dir, created) = self.child(&self.component(name)?, Some(0o700))?;
        let changed = dir.set_owner_and_mode(mode, uid, gid)?;
        Ok((dir, created || changed))
    }

    /// [`Dir::ensure_dir`] down a chain of `(name, mode, uid, gid)`, each below the
    /// one before (e.g. `USER`, `apps`, `APP`, `public`); returns the last directory
    /// and whether anything changed on the way. An empty chain returns this directory.
    pub fn ensure_chain(&self, chain: &[(&str, u32, u32, u32)]) -> Result<(Dir, bool), TreeError> {
        let fd = self.fd.try_clone().map_err(|e| TreeError::io(&self.path, e))?;
        let mut dir = Dir { fd, path: self.path.clone() };
        let mut changed = false;
        for &(name, mode, uid, gid) in chain {
            let (next, made) = dir.ensure_dir(name, mode, uid, gid)?;
            (dir, changed) = (next, changed || made);
        }
        Ok((dir, changed))
    }

    /// Opens child directory `name`; `Ok(None)` when absent; [`TreeError::Planted`]
    /// when it is a link or not a directory.
    pub fn open_dir(&self, name: &str) -> Result<Option<Dir>, TreeError> {
        match self.child(&self.component(name)?, None) {
            Ok((dir, _)) => Ok(Some(dir)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes child `name` and everything below it; `Ok(false)` when it was absent.
    ///
    /// - A symbolic link is unlinked itself, its target untouched; so is a hard
    ///   link (the other names of the file, and its content, stay); a fifo or
    ///   device is unlinked without being opened.
    /// - It never crosses a mount point (a bind mount of the same filesystem
    ///   included): such an entry, and the directories above it, stay, and the call
    ///   ends in [`TreeError::MountPoint`] naming it (the first one, when there are
    ///   several) after removing everything else it could.
    /// - Entries may change under it: every directory is opened by name from its
    ///   parent's descriptor without following links, and emptied through its own
    ///   descriptor. A directory swapped for a link mid-walk makes it unlink the link
    ///   and go on in the directory it had opened (now elsewhere in the user's tree),
    ///   never outside the tree. A name that keeps changing is tried again a few
    ///   times, then the call ends in an `Io` error.
    /// - It holds a descriptor per level down to [`MAX_DEPTH`]; a directory below
    ///   that is moved up to the top of the tree (renamed inside it) and removed
    ///   from there, so a tree of any depth goes.
    pub fn remove_tree(&self, name: &str) -> Result<bool, TreeError> {
        let name = self.component(name)?;
        let path = self.path.join(OsStr::from_bytes(name.to_bytes()));
        let mut mounts: Vec<PathBuf> = Vec::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut hoisted = 0u64;
        let existed = match unlink_or_open(self.fd.as_fd(), &name, &path)? {
            Found::Absent => return Ok(false),
            Found::Removed => return Ok(true),
            Found::MountPoint => return Err(TreeError::MountPoint { path }),
            Found::Dir(fd) => {
                stack.push(Frame::new(fd, name, path, 0)?);
                true
            }
        };
        while let Some(frame) = stack.last_mut() {
            if let Some(entry) = frame.entries.pop() {
                let entry_path = frame.path.join(OsStr::from_bytes(entry.to_bytes()));
                match unlink_or_open(frame.fd.as_fd(), &entry, &entry_path)? {
                    Found::Absent | Found::Removed => {}
                    Found::MountPoint => {
                        frame.kept = true;
                        mounts.push(entry_path);
                    }
                    Found::Dir(fd) if stack.len() >= MAX_DEPTH => {
                        // Too deep to hold a descriptor per level: the directory moves
                        // up to the top of the tree being removed (a rename inside that
                        // tree, relative to descriptors berth holds) and is removed
                        // from there, so no depth keeps a tree from going.
                        drop(fd);
                        hoisted += 1;
                        let aside =
                            CString::new(format!(".berth-deep-{}-{hoisted}", std::process::id())).expect("no NUL");
                        let (top, rest) = stack.split_first_mut().expect("the loop holds a frame");
                        let parent = rest.last().map_or(top.fd.as_fd(), |f| f.fd.as_fd());
                        rfs::renameat(parent, &*entry, top.fd.as_fd(), &*aside)
                            .map_err(|e| TreeError::io(&entry_path, e))?;
                        top.entries.push(aside);
                    }
                    Found::Dir(fd) => stack.push(Frame::new(fd, entry, entry_path, 0)?),
                }
                continue;
            }
            // Emptied (but for mount points): remove it by name from its parent.
            let frame = stack.pop().expect("the loop holds a frame");
            if frame.kept {
                if let Some(parent) = stack.last_mut() {
                    parent.kept = true;
                }
                continue;
            }
            let parent = stack.last().map_or(self.fd.as_fd(), |p| p.fd.as_fd());
            let Frame { fd, name, path, rounds, .. } = frame;
            drop(fd);
            match rfs::unlinkat(parent, &*name, AtFlags::REMOVEDIR) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(Errno::BUSY) => {
                    // Mounted on since it was opened.
                    if let Some(parent) = stack.last_mut() {
                        parent.kept = true;
                    }
                    mounts.push(path);
                }
                // Refilled, or swapped for another entry, since it was opened:
                // whatever is at the name now is removed the same way.
                Err(Errno::NOTEMPTY | Errno::EXIST | Errno::NOTDIR) if rounds < ROUNDS => {
                    match unlink_or_open(parent, &name, &path)? {
                        Found::Absent | Found::Removed => {}
                        Found::MountPoint => {
                            if let Some(parent) = stack.last_mut() {
                                parent.kept = true;
                            }
                            mounts.push(path);
                        }
                        Found::Dir(fd) => stack.push(Frame::new(fd, name, path, rounds + 1)?),
                    }
                }
                Err(Errno::NOTEMPTY | Errno::EXIST | Errno::NOTDIR) => {
                    return Err(TreeError::other(&path, "kept changing while berth removed it"))
                }
                Err(e) => return Err(TreeError::io(&path, e)),
            }
        }
        match mounts.into_iter().next() {
            Some(path) => Err(TreeError::MountPoint { path }),
            None => Ok(existed),
        }
    }

    /// Makes child `name` a symbolic link to `target`: creates it when absent
    /// (true), leaves it when it already points there (false), replaces a link
    /// that points elsewhere (true; the link itself, never its target). Anything
    /// else in its place (a file, a directory) is left alone and is
    /// [`TreeError::Planted`].
    pub fn ensure_symlink(&self, name: &str, target: &str) -> Result<bool, TreeError> {
        let cname = self.component(name)?;
        let path = self.path.join(name);
        for _ in 0..ROUNDS {
            match rfs::readlinkat(&self.fd, &*cname, Vec::new()) {
                Ok(current) if current.as_bytes() == target.as_bytes() => return Ok(false),
                Ok(_) => {
                    // Replaced atomically: a link made aside, renamed over the old one.
                    let aside = CString::new(format!(".{name}.berth-{}", std::process::id())).expect("no NUL");
                    let _ = rfs::unlinkat(&self.fd, &*aside, AtFlags::empty());
                    rfs::symlinkat(target, &self.fd, &*aside).map_err(|e| TreeError::io(&path, e))?;
                    // Only over a link: the name may have changed since readlinkat.
                    if what_is(self.fd.as_fd(), &cname) != Some(SYMLINK) {
                        let _ = rfs::unlinkat(&self.fd, &*aside, AtFlags::empty());
                        continue;
                    }
                    return match rfs::renameat(&self.fd, &*aside, &self.fd, &*cname) {
                        Ok(()) => Ok(true),
                        Err(e) => {
                            let _ = rfs::unlinkat(&self.fd, &*aside, AtFlags::empty());
                            Err(TreeError::io(&path, e))
                        }
                    };
                }
                Err(Errno::NOENT) => match rfs::symlinkat(target, &self.fd, &*cname) {
                    Ok(()) => return Ok(true),
                    Err(Errno::EXIST) => continue,
                    Err(e) => return Err(TreeError::io(&path, e)),
                },
                Err(Errno::INVAL) => match what_is(self.fd.as_fd(), &cname) {
                    Some(SYMLINK) | None => continue,
                    Some(what) => return Err(TreeError::Planted { path, what }),
                },
                Err(e) => return Err(TreeError::io(&path, e)),
            }
        }
        Err(TreeError::other(&path, "kept changing while berth made it a link"))
    }

    /// Makes child `name` a regular file (created empty when absent) with exactly
    /// `mode` and owner `uid:gid`, set through its descriptor; true when anything
    /// changed. Anything else in its place (a link, a fifo, a directory) is
    /// [`TreeError::Planted`] and left alone. The file is never read or written.
    pub fn ensure_file(&self, name: &str, mode: u32, uid: u32, gid: u32) -> Result<bool, TreeError> {
        let cname = self.component(name)?;
        let path = self.path.join(name);
        let flags = OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
        let create = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
        let (fd, created) = match rfs::openat(&self.fd, &*cname, flags | create, Mode::from_raw_mode(0o600)) {
            Ok(fd) => (fd, true),
            Err(Errno::EXIST) => match rfs::openat(&self.fd, &*cname, flags | OFlags::RDONLY, Mode::empty()) {
                Ok(fd) => (fd, false),
                Err(Errno::LOOP) => return Err(TreeError::Planted { path, what: SYMLINK }),
                Err(e) => return Err(TreeError::io(&path, e)),
            },
            Err(e) => return Err(TreeError::io(&path, e)),
        };
        let stat = rfs::fstat(&fd).map_err(|e| TreeError::io(&path, e))?;
        let kind = FileType::from_raw_mode(stat.st_mode);
        if kind != FileType::RegularFile {
            return Err(TreeError::Planted {
                path,
                what: if kind == FileType::Fifo { "a fifo" } else { "not a regular file" },
            });
        }
        let file = Dir { fd, path };
        Ok(file.set_owner_and_mode(mode, uid, gid)? || created)
    }

    /// Puts `content` at child `name` as a new regular file owned `uid:gid` with
    /// exactly `mode`: written aside under a fresh name (`O_CREAT | O_EXCL`, never
    /// through a link), its owner and mode set through its descriptor, then renamed
    /// over `name` (a link there is replaced, never followed; a directory there
    /// fails). The old file's inode, whatever it was linked to, is never written.
    pub fn write_file(&self, name: &str, content: &[u8], mode: u32, uid: u32, gid: u32) -> Result<(), TreeError> {
        use std::io::Write;
        let cname = self.component(name)?;
        let path = self.path.join(name);
        let aside = CString::new(format!(".{name}.berth-{}", std::process::id())).expect("no NUL");
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let _ = rfs::unlinkat(&self.fd, &*aside, AtFlags::empty());
        let fd =
            rfs::openat(&self.fd, &*aside, flags, Mode::from_raw_mode(0o600)).map_err(|e| TreeError::io(&path, e))?;
        let written = (|| {
            let file = Dir { fd, path: path.clone() };
            file.set_owner_and_mode(mode, uid, gid)?;
            let mut out = std::fs::File::from(file.fd);
            out.write_all(content).and_then(|()| out.sync_all()).map_err(|e| TreeError::io(&path, e))?;
            rfs::renameat(&self.fd, &*aside, &self.fd, &*cname).map_err(|e| TreeError::io(&path, e))
        })();
        if written.is_err() {
            let _ = rfs::unlinkat(&self.fd, &*aside, AtFlags::empty());
        }
        written
    }

    /// The names in this directory (not `.` and `..`), read through its descriptor,
    /// in no particular order. Names that are not UTF-8 are left out.
    pub fn entries(&self) -> Result<Vec<String>, TreeError> {
        let reader = rfs::Dir::read_from(&self.fd).map_err(|e| TreeError::io(&self.path, e))?;
        let mut names = Vec::new();
        for entry in reader {
            let entry = entry.map_err(|e| TreeError::io(&self.path, e))?;
            let name = entry.file_name();
            if name != c"." && name != c".." {
                names.extend(name.to_str().ok().map(str::to_owned));
            }
        }
        Ok(names)
    }

    /// The names in this directory with what each is (not following a link, as
    /// [`TreeError::Planted`] names them: [`SYMLINK`], "a directory", "a regular
    /// file", ...), sorted. A name that vanished meanwhile is left out.
    pub fn entries_with_kinds(&self) -> Result<Vec<(String, &'static str)>, TreeError> {
        let reader = rfs::Dir::read_from(&self.fd).map_err(|e| TreeError::io(&self.path, e))?;
        let mut entries = Vec::new();
        for entry in reader {
            let entry = entry.map_err(|e| TreeError::io(&self.path, e))?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            if let Some(what) = what_is(self.fd.as_fd(), name) {
                entries.push((String::from_utf8_lossy(name.to_bytes()).into_owned(), what));
            }
        }
        entries.sort();
        Ok(entries)
    }

    /// The content of regular file `name`, opened without following a link and
    /// without blocking: `Ok(None)` when absent, [`TreeError::Planted`] for a link
    /// or anything but a regular file, an `Io` error when it is over `max` bytes
    /// (nothing past `max` is ever read).
    pub fn read_file(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>, TreeError> {
        use std::io::Read;
        let cname = self.component(name)?;
        let path = self.path.join(name);
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd = match rfs::openat(&self.fd, &*cname, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => return Err(TreeError::Planted { path, what: SYMLINK }),
            Err(e) => return Err(TreeError::io(&path, e)),
        };
        let stat = rfs::fstat(&fd).map_err(|e| TreeError::io(&path, e))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(TreeError::Planted { path, what: "not a regular file" });
        }
        let mut content = Vec::new();
        std::fs::File::from(fd).take(max + 1).read_to_end(&mut content).map_err(|e| TreeError::io(&path, e))?;
        if content.len() as u64 > max {
            return Err(TreeError::other(&path, &format!("is larger than {max} bytes")));
        }
        Ok(Some(content))
    }

    /// Puts child `fresh` at child `name` in one step (`renameat2`, both relative to
    /// this directory's descriptor; neither is followed if it is a link): with
    /// `RENAME_EXCHANGE` when `name` exists, so what was there is now at `fresh`;
    /// a plain rename when it does not. True when `name` existed.
    pub fn exchange(&self, fresh: &str, name: &str) -> Result<bool, TreeError> {
        let (cfresh, cname) = (self.component(fresh)?, self.component(name)?);
        let path = self.path.join(name);
        for _ in 0..ROUNDS {
            match rfs::renameat_with(&self.fd, &*cfresh, &self.fd, &*cname, rfs::RenameFlags::EXCHANGE) {
                Ok(()) => return Ok(true),
                Err(Errno::NOENT) => {
                    match rfs::renameat_with(&self.fd, &*cfresh, &self.fd, &*cname, rfs::RenameFlags::NOREPLACE) {
                        Ok(()) => return Ok(false),
                        Err(Errno::EXIST) => continue,
                        Err(e) => return Err(TreeError::io(&path, e)),
                    }
                }
                Err(e) => return Err(TreeError::io(&path, e)),
            }
        }
        Err(TreeError::other(&path, "kept changing while berth put the new tree in place"))
    }

    /// Where this directory was when opened (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` as one path component, or an `Io` error of kind `InvalidInput`.
    fn component(&self, name: &str) -> Result<CString, TreeError> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(TreeError::io(
                &self.path,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{name:?} is not one path component")),
            ));
        }
        Ok(CString::new(name).expect("checked for NUL"))
    }

    /// Opens child directory `name`; with `create`, makes it first when absent (with
    /// that mode, filtered by the umask) and says so.
    fn child(&self, name: &CStr, create: Option<u32>) -> Result<(Dir, bool), TreeError> {
        let path = self.path.join(OsStr::from_bytes(name.to_bytes()));
        let mut created = false;
        for _ in 0..ROUNDS {
            match open_child(self.fd.as_fd(), name, false) {
                Ok(fd) => return Ok((Dir { fd, path }, created)),
                Err(Errno::NOENT) => match create {
                    None => return Err(TreeError::io(&path, Errno::NOENT)),
                    Some(mode) => match rfs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode)) {
                        Ok(()) => created = true,
                        Err(Errno::EXIST) => {}
                        Err(e) => return Err(TreeError::io(&path, e)),
                    },
                },
                Err(Errno::LOOP | Errno::NOTDIR) => match what_is(self.fd.as_fd(), name) {
                    // Swapped back to a directory, or gone, meanwhile: look again.
                    Some("a directory") | None => {}
                    Some(what) => return Err(TreeError::Planted { path, what }),
                },
                Err(Errno::AGAIN) => {}
                Err(e) => return Err(TreeError::io(&path, e)),
            }
        }
        Err(TreeError::other(&path, "kept changing while berth opened it"))
    }

    /// Gives this directory exactly `uid:gid` and `mode`; true when that changed it.
    fn set_owner_and_mode(&self, mode: u32, uid: u32, gid: u32) -> Result<bool, TreeError> {
        let io = |e: Errno| TreeError::io(&self.path, e);
        let mut changed = false;
        let mut stat = rfs::fstat(&self.fd).map_err(io)?;
        if stat.st_uid != uid || stat.st_gid != gid {
            rfs::fchown(&self.fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(io)?;
            stat = rfs::fstat(&self.fd).map_err(io)?;
            changed = true;
        }
        if stat.st_mode & 0o7777 != mode {
            rfs::fchmod(&self.fd, Mode::from_raw_mode(mode)).map_err(io)?;
            changed = true;
        }
        Ok(changed)
    }
}

/// A directory [`Dir::remove_tree`] is emptying.
struct Frame {
    fd: OwnedFd,
    /// Its name in its parent, and its path (for messages).
    name: CString,
    path: PathBuf,
    /// What is left to remove in it (read when it was opened).
    entries: Vec<CString>,
    /// A mount point is left below it, so it stays too.
    kept: bool,
    /// How many times its name was opened again because it kept changing.
    rounds: u32,
}

impl Frame {
    fn new(fd: OwnedFd, name: CString, path: PathBuf, rounds: u32) -> Result<Frame, TreeError> {
        let mut entries = Vec::new();
        let reader = rfs::Dir::read_from(&fd).map_err(|e| TreeError::io(&path, e))?;
        for entry in reader {
            let entry = entry.map_err(|e| TreeError::io(&path, e))?;
            let name = entry.file_name();
            if name != c"." && name != c".." {
                entries.push(name.to_owned());
            }
        }
        Ok(Frame { fd, name, path, entries, kept: false, rounds })
    }
}

/// What [`unlink_or_open`] found at a name.
enum Found {
    Absent,
    /// Not a directory (a link, a file, a fifo...): unlinked.
    Removed,
    /// A directory on another mount: left alone.
    MountPoint,
    /// A directory of the same mount, opened.
    Dir(OwnedFd),
}

/// Unlinks `name` in `parent` when it is not a directory, opens it when it is one
/// on the same mount; tries again when it changes kind in between.
fn unlink_or_open(parent: BorrowedFd<'_>, name: &CStr, path: &Path) -> Result<Found, TreeError> {
    for _ in 0..ROUNDS {
        match open_child(parent, name, true) {
            Ok(fd) => return Ok(Found::Dir(fd)),
            Err(Errno::NOENT) => return Ok(Found::Absent),
            Err(Errno::XDEV) => return Ok(Found::MountPoint),
            Err(Errno::LOOP | Errno::NOTDIR) => match rfs::unlinkat(parent, name, AtFlags::empty()) {
                Ok(()) => return Ok(Found::Removed),
                Err(Errno::NOENT) => return Ok(Found::Absent),
                // A file mounted over.
                Err(Errno::BUSY) => return Ok(Found::MountPoint),
                // A directory again: open it.
                Err(Errno::ISDIR) => {}
                Err(e) => return Err(TreeError::io(path, e)),
            },
            Err(Errno::AGAIN) => {}
            Err(e) => return Err(TreeError::io(path, e)),
        }
    }
    Err(TreeError::other(path, "kept changing while berth removed it"))
}

/// False once the kernel said it has no `openat2` (Linux before 5.6, or a seccomp
/// filter): [`open_child`] then uses `openat` and compares devices instead.
static OPENAT2: AtomicBool = AtomicBool::new(true);

/// Opens directory `name` (one component) in `parent` without following a link:
/// `LOOP` or `NOTDIR` when it is a link or not a directory, `NOENT` when absent,
/// and with `same_mount`, `XDEV` when it is a mount point.
pub(crate) fn open_child(parent: BorrowedFd<'_>, name: &CStr, same_mount: bool) -> Result<OwnedFd, Errno> {
    if OPENAT2.load(Ordering::Relaxed) {
        // BENEATH is defence in depth: `name` is one component (no '..', not
        // absolute), so it is beneath `parent` anyway. Under renames it may say
        // AGAIN, which the callers take as "look again".
        let mut resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS | ResolveFlags::BENEATH;
        if same_mount {
            resolve |= ResolveFlags::NO_XDEV;
        }
        match rfs::openat2(parent, name, DIR_FLAGS, Mode::empty(), resolve) {
            Err(Errno::NOSYS) => OPENAT2.store(false, Ordering::Relaxed),
            other => return other,
        }
    }
    let fd = rfs::openat(parent, name, DIR_FLAGS, Mode::empty())?;
    if same_mount && rfs::fstat(&fd)?.st_dev != rfs::fstat(parent)?.st_dev {
        return Err(Errno::XDEV);
    }
    Ok(fd)
}

/// What is at `name` in `parent` (not following a link), for messages; `None`
/// when nothing is.
fn what_is(parent: BorrowedFd<'_>, name: &CStr) -> Option<&'static str> {
    let stat = rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    Some(match FileType::from_raw_mode(stat.st_mode) {
        FileType::Symlink => SYMLINK,
        FileType::Directory => "a directory",
        FileType::RegularFile => "a regular file",
        FileType::Fifo => "a fifo",
        FileType::Socket => "a socket",
        FileType::CharacterDevice | FileType::BlockDevice => "a device file",
        FileType::Unknown => "not a directory",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// A uid and gid no account has: what a hosted user's would be.
    const USER: u32 = 54_321;

    /// Every entry below `dir`, not following links: owner, mode, and a file's
    /// content or a link's target. What "untouched" is compared with.
    fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, u32, u32, Vec<u8>)> {
        fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u32, u32, u32, Vec<u8>)>) {
            let meta = std::fs::symlink_metadata(dir).unwrap();
            out.insert(dir.strip_prefix(base).unwrap().to_owned(), (meta.uid(), meta.gid(), meta.mode(), Vec::new()));
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                if meta.is_dir() {
                    walk(base, &path, out);
                    continue;
                }
                let content = if meta.file_type().is_symlink() {
                    std::fs::read_link(&path).unwrap().into_os_string().into_encoded_bytes()
                } else {
                    std::fs::read(&path).unwrap()
                };
                out.insert(path.strip_prefix(base).unwrap().to_owned(), (meta.uid(), meta.gid(), meta.mode(), content));
            }
        }
        let mut out = BTreeMap::new();
        walk(dir, dir, &mut out);
        out
    }

    /// A directory outside the user's tree, root-owned, with something in it.
    fn outside(path: &Path) -> BTreeMap<PathBuf, (u32, u32, u32, Vec<u8>)> {
        std::fs::create_dir_all(path.join("public")).unwrap();
        std::fs::create_dir_all(path.join("a/b")).unwrap();
        std::fs::write(path.join("keep.txt"), "precious").unwrap();
        std::fs::write(path.join("public/index.html"), "<p>another user's site</p>").unwrap();
        for dir in [path.to_owned(), path.join("public"), path.join("a")] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        snapshot(path)
    }

    fn write_file(dir: &Dir, name: &str, content: &str) {
        use std::io::Write;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(&dir.fd, name, flags, Mode::from_raw_mode(0o644)).unwrap();
        std::fs::File::from(fd).write_all(content.as_bytes()).unwrap();
    }

    fn owner_and_mode(path: &Path) -> (u32, u32, u32) {
        let meta = std::fs::symlink_metadata(path).unwrap();
        (meta.uid(), meta.gid(), meta.mode() & 0o7777)
    }

    #[test]
    fn ensure_dir_makes_exact_owner_and_mode_and_reports_changes() {
        let t = tempfile::tempdir().unwrap();
        let anchor = Dir::open_trusted(t.path()).unwrap();
        let (home, changed) = anchor.ensure_dir("derek", 0o2750, USER, USER).unwrap();
        assert!(changed);
        assert_eq!(home.path(), t.path().join("derek"));
        assert_eq!(owner_and_mode(&t.path().join("derek")), (USER, USER, 0o2750));
        assert!(!anchor.ensure_dir("derek", 0o2750, USER, USER).unwrap().1, "nothing to do the second time");
        assert!(anchor.ensure_dir("derek", 0o750, USER, USER).unwrap().1);
        assert_eq!(owner_and_mode(&t.path().join("derek")), (USER, USER, 0o750));

        let (public, changed) = anchor
            .ensure_chain(&[("derek", 0o750, USER, USER), ("apps", 0o750, USER, USER), ("shop", 0o700, 0, 0)])
            .unwrap();
        assert!(changed);
        assert_eq!(public.path(), t.path().join("derek/apps/shop"));
        assert_eq!(owner_and_mode(&t.path().join("derek/apps")), (USER, USER, 0o750));
        assert_eq!(owner_and_mode(&t.path().join("derek/apps/shop")), (0, 0, 0o700));
        assert!(anchor.open_dir("derek").unwrap().is_some());
        assert!(anchor.open_dir("nobody").unwrap().is_none());

        std::fs::write(t.path().join("derek/log"), "a file").unwrap();
        match home.ensure_dir("log", 0o750, USER, USER) {
            Err(TreeError::Planted { path, what: "a regular file" }) => assert_eq!(path, t.path().join("derek/log")),
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_to_string(t.path().join("derek/log")).unwrap(), "a file");
    }

    #[test]
    fn ensure_trusted_creates_missing_parents_and_refuses_a_link_on_the_way() {
        let t = tempfile::tempdir().unwrap();
        let (users, changed) = Dir::ensure_trusted(&t.path().join("srv/users"), 0o755, 0, 0).unwrap();
        assert!(changed);
        assert_eq!(users.path(), t.path().join("srv/users"));
        assert_eq!(owner_and_mode(&t.path().join("srv/users")), (0, 0, 0o755));
        assert!(!Dir::ensure_trusted(&t.path().join("srv/users"), 0o755, 0, 0).unwrap().1);
        assert!(Dir::open_trusted(&t.path().join("srv/nothing")).unwrap_err().is_not_found());

        std::fs::create_dir(t.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(t.path().join("elsewhere"), t.path().join("link")).unwrap();
        for result in [
            Dir::open_trusted(&t.path().join("link/users")).map(drop),
            Dir::ensure_trusted(&t.path().join("link/users"), 0o755, 0, 0).map(drop),
        ] {
            match result {
                Err(TreeError::Planted { path, what: SYMLINK }) => assert_eq!(path, t.path().join("link")),
                other => panic!("{other:?}"),
            }
        }
        assert!(!t.path().join("elsewhere/users").exists());
        assert!(Dir::open_trusted(Path::new("relative")).is_err());
    }

    #[test]
    fn symlinked_apps_dir_is_not_followed_by_chown() {
        let t = tempfile::tempdir().unwrap();
        let before = outside(&t.path().join("other"));
        let anchor = Dir::open_trusted(t.path()).unwrap();
        let (home, _) = anchor.ensure_dir("derek", 0o750, USER, USER).unwrap();
        std::os::unix::fs::symlink(t.path().join("other"), t.path().join("derek/apps")).unwrap();

        let refused = home.ensure_dir("apps", 0o750, USER, USER).unwrap_err();
        assert!(matches!(&refused, TreeError::Planted { path, what: SYMLINK } if path == &t.path().join("derek/apps")));
        let chain = [("derek", 0o750, USER, USER), ("apps", 0o750, USER, USER), ("public", 0o750, USER, USER)];
        assert!(matches!(anchor.ensure_chain(&chain), Err(TreeError::Planted { what: SYMLINK, .. })));
        assert!(matches!(home.open_dir("apps"), Err(TreeError::Planted { what: SYMLINK, .. })));
        assert_eq!(snapshot(&t.path().join("other")), before, "the link's target keeps its owner, mode and content");
    }

    #[test]
    fn names_that_are_not_one_component_are_refused() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("sub")).unwrap();
        let sub = Dir::open_trusted(&t.path().join("sub")).unwrap();
        for name in ["", ".", "..", "../sub", "a/b", "nul\0"] {
            assert!(matches!(sub.ensure_dir(name, 0o700, 0, 0), Err(TreeError::Io { .. })), "{name:?}");
            assert!(matches!(sub.remove_tree(name), Err(TreeError::Io { .. })), "{name:?}");
        }
        assert!(t.path().join("sub").is_dir(), "'..' did not remove the directory itself");
        let refused = sub.remove_tree("..").unwrap_err();
        assert!(matches!(&refused, TreeError::Io { path, .. } if path == &t.path().join("sub")), "{refused:?}");
    }

    #[test]
    fn remove_tree_unlinks_links_and_leaves_their_targets() {
        let t = tempfile::tempdir().unwrap();
        let before = outside(&t.path().join("other"));
        let anchor = Dir::open_trusted(t.path()).unwrap();
        let (deep, _) = anchor
            .ensure_chain(&[("derek", 0o750, USER, USER), ("apps", 0o750, USER, USER), ("shop", 0o750, 0, 0)])
            .unwrap();
        write_file(&deep, "index.php", "<?php");
        let home = t.path().join("derek");
        std::os::unix::fs::symlink(t.path().join("other"), home.join("to-dir")).unwrap();
        std::os::unix::fs::symlink(t.path().join("other/keep.txt"), home.join("apps/to-file")).unwrap();
        std::os::unix::fs::symlink("../../../other/public", home.join("apps/shop/relative")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", home.join("dangling")).unwrap();

        assert!(anchor.remove_tree("derek").unwrap());
        assert!(!home.exists());
        assert_eq!(snapshot(&t.path().join("other")), before);
        assert!(!anchor.remove_tree("derek").unwrap(), "absent: nothing to do");

        // A link in the anchor itself is unlinked, not followed.
        std::os::unix::fs::symlink(t.path().join("other"), t.path().join("link")).unwrap();
        assert!(anchor.remove_tree("link").unwrap());
        assert!(std::fs::symlink_metadata(t.path().join("link")).is_err());
        assert_eq!(snapshot(&t.path().join("other")), before);
    }

    /// Regression: a user's chain of 1,100 nested directories made `sysuser.delete`
    /// fail with "too deep" and keep the home for good (red team, finding 6).
    #[test]
    fn a_tree_deeper_than_max_depth_is_removed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let top = Dir::open_trusted(dir.path()).unwrap();
        let mut path = dir.path().join("home");
        std::fs::create_dir(&path).unwrap();
        // Made relative to a descriptor: the full path would pass PATH_MAX.
        let mut fd = rfs::open(&path, DIR_FLAGS, Mode::empty()).unwrap();
        for _ in 0..MAX_DEPTH + 100 {
            rfs::mkdirat(&fd, c"d", Mode::from_raw_mode(0o755)).unwrap();
            fd = rfs::openat(&fd, c"d", DIR_FLAGS, Mode::empty()).unwrap();
        }
        rfs::openat(&fd, c"leaf", OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC, Mode::from_raw_mode(0o644))
            .unwrap();
        drop(fd);
        assert!(top.remove_tree("home").unwrap());
        path.pop();
        assert_eq!(std::fs::read_dir(&path).unwrap().count(), 0, "nothing is left");
    }

    #[test]
    fn hard_link_to_an_outside_file_is_unlinked_and_the_file_keeps_its_content() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("shadow"), "root:secret").unwrap();
        let anchor = Dir::open_trusted(t.path()).unwrap();
        anchor.ensure_chain(&[("derek", 0o750, USER, USER), ("apps", 0o750, USER, USER)]).unwrap();
        std::fs::hard_link(t.path().join("shadow"), t.path().join("derek/apps/stolen")).unwrap();
        assert!(anchor.remove_tree("derek").unwrap());
        assert_eq!(std::fs::read_to_string(t.path().join("shadow")).unwrap(), "root:secret");
        assert_eq!(std::fs::metadata(t.path().join("shadow")).unwrap().nlink(), 1);
    }

    #[test]
    fn fifo_in_the_tree_is_removed_without_blocking() {
        let t = tempfile::tempdir().unwrap();
        let anchor = Dir::open_trusted(t.path()).unwrap();
        let (apps, _) = anchor.ensure_chain(&[("derek", 0o750, USER, USER), ("apps", 0o750, USER, USER)]).unwrap();
        rfs::mknodat(&apps.fd, "pipe", FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        rfs::mknodat(&apps.fd, "null", FileType::CharacterDevice, Mode::from_raw_mode(0o600), rfs::makedev(1, 3))
            .unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(anchor.remove_tree("derek").map_err(|e| e.to_string())));
        let removed = finished.recv_timeout(Duration::from_secs(10)).expect("remove_tree blocked on the fifo");
        assert_eq!(removed, Ok(true));
        assert!(!t.path().join("derek").exists());
    }

    /// This test's thread in a mount namespace of its own with private propagation:
    /// what it mounts is seen by nobody else, and goes with the thread.
    fn private_mounts() {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare (run the tests as root)");
        mount(&["--make-rprivate", "/"]);
    }

    fn mount(args: &[&str]) {
        let status = std::process::Command::new("mount").args(args).status().unwrap();
        assert!(status.success(), "mount {args:?}");
    }

    #[test]
    fn tmpfs_mounted_in_the_tree_is_left_in_place_and_reported() {
        private_mounts();
        let t = tempfile::tempdir().unwrap();
        let anchor = Dir::open_trusted(t.path()).unwrap();
        let (apps, _) = anchor.ensure_chain(&[("derek", 0o750, USER, USER), ("apps", 0o750, USER, USER)]).unwrap();
        apps.ensure_dir("mnt", 0o755, 0, 0).unwrap();
        apps.ensure_dir("sibling", 0o755, 0, 0).unwrap().0.ensure_dir("below", 0o755, 0, 0).unwrap();
        write_file(&apps, "file", "gone soon");
        let mnt = t.path().join("derek/apps/mnt");
        mount(&["-t", "tmpfs", "tmpfs", mnt.to_str().unwrap()]);
        std::fs::write(mnt.join("data"), "on another filesystem").unwrap();

        match anchor.remove_tree("derek") {
            Err(TreeError::MountPoint { path }) => assert_eq!(path, mnt),
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_to_string(mnt.join("data")).unwrap(), "on another filesystem");
        let left: Vec<_> =
            std::fs::read_dir(t.path().join("derek/apps")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["mnt"], "everything but the mount point (and what holds it) is removed");
        assert!(matches!(anchor.remove_tree("derek"), Err(TreeError::MountPoint { path }) if path == mnt));
        mount(&["-t", "tmpfs", "tmpfs", t.path().join("derek").to_str().unwrap()]);
        assert!(
            matches!(anchor.remove_tree("derek"), Err(TreeError::MountPoint { path }) if path == t.path().join("derek"))
        );
        let _ = std::process::Command::new("umount").arg("-R").arg(t.path().join("derek")).status();
    }

    #[test]
    fn bind_mount_of_the_same_filesystem_is_not_crossed() {
        private_mounts();
        let t = tempfile::tempdir().unwrap();
        let before = outside(&t.path().join("other"));
        let anchor = Dir::open_trusted(t.path()).unwrap();
        let (apps, _) = anchor.ensure_chain(&[("derek", 0o750, USER, USER), ("apps", 0o750, USER, USER)]).unwrap();
        apps.ensure_dir("bound", 0o755, 0, 0).unwrap();
        let bound = t.path().join("derek/apps/bound");
        mount(&["--bind", t.path().join("other").to_str().unwrap(), bound.to_str().unwrap()]);
        assert!(matches!(anchor.remove_tree("derek"), Err(TreeError::MountPoint { path }) if path == bound));
        assert_eq!(snapshot(&t.path().join("other")), before);
        let _ = std::process::Command::new("umount").arg(&bound).status();
    }

    #[test]
    fn ensure_symlink_creates_keeps_and_replaces_only_links() {
        let t = tempfile::tempdir().unwrap();
        let before = outside(&t.path().join("other"));
        let anchor = Dir::open_trusted(t.path()).unwrap();
        let (home, _) = anchor.ensure_dir("derek", 0o750, USER, USER).unwrap();
        assert!(home.ensure_symlink("log", "../../var/log/x").unwrap());
        assert!(!home.ensure_symlink("log", "../../var/log/x").unwrap());
        assert_eq!(std::fs::read_link(t.path().join("derek/log")).unwrap(), Path::new("../../var/log/x"));
        std::os::unix::fs::symlink(t.path().join("other"), t.path().join("derek/planted")).unwrap();
        assert!(home.ensure_symlink("planted", "elsewhere").unwrap());
        assert_eq!(std::fs::read_link(t.path().join("derek/planted")).unwrap(), Path::new("elsewhere"));
        home.ensure_dir("apps", 0o750, USER, USER).unwrap();
        assert!(matches!(home.ensure_symlink("apps", "x"), Err(TreeError::Planted { what: "a directory", .. })));
        assert_eq!(snapshot(&t.path().join("other")), before);
        let names: Vec<_> =
            std::fs::read_dir(t.path().join("derek")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 3, "no link left aside: {names:?}");
    }

    /// Swaps (`renameat2(RENAME_EXCHANGE)`) `dir/a` with `dir/b`, a link to
    /// `target`, in a loop, putting the link back when the code under test removed
    /// it, until `stop`; returns the number of swaps.
    fn swapper(pairs: Vec<(PathBuf, PathBuf)>, target: PathBuf, stop: Arc<AtomicBool>) -> usize {
        let mut swaps = 0;
        for pass in 0usize.. {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            for (a, b) in &pairs {
                match rfs::renameat_with(rfs::CWD, a, rfs::CWD, b, rfs::RenameFlags::EXCHANGE) {
                    Ok(()) => swaps += 1,
                    Err(_) => {
                        let kind = |p: &Path| std::fs::symlink_metadata(p).ok().map(|m| m.is_dir());
                        if kind(a).is_none() && kind(b) == Some(true) {
                            let _ = std::fs::rename(b, a);
                        }
                        if kind(b).is_none() {
                            let _ = std::os::unix::fs::symlink(&target, b);
                        }
                    }
                }
            }
            // Without a pause now and then, the swaps (each locks the directory)
            // starve the main thread's calls on a loaded machine.
            if pass % 4 == 0 {
                std::thread::yield_now();
            }
        }
        swaps
    }

    /// Runs `work(tree, anchor)` `rounds` times while another thread swaps
    /// `tree/apps` and `tree/victim/a` with links to `tree/../other`; returns the
    /// snapshot of `other` before and after, and the number of swaps.
    #[allow(clippy::type_complexity)]
    fn race(
        rounds: usize,
        mut work: impl FnMut(&Path, &Dir),
    ) -> (BTreeMap<PathBuf, (u32, u32, u32, Vec<u8>)>, BTreeMap<PathBuf, (u32, u32, u32, Vec<u8>)>, usize) {
        let t = tempfile::tempdir().unwrap();
        let other = t.path().join("other");
        let before = outside(&other);
        let tree = t.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        let anchor = Dir::open_trusted(&tree).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let pairs = vec![(tree.join("apps"), tree.join("decoy")), (tree.join("victim/a"), tree.join("victim/link"))];
        let swapping = {
            let stop = stop.clone();
            let other = other.clone();
            std::thread::spawn(move || swapper(pairs, other, stop))
        };
        for _ in 0..rounds {
            work(&tree, &anchor);
        }
        stop.store(true, Ordering::Relaxed);
        let swaps = swapping.join().unwrap();
        (before, snapshot(&other), swaps)
    }

    /// Many rounds of the moves of sysuser/app jobs (make `apps/public` with a
    /// chown and chmod, fill and remove a tree) while another thread swaps the
    /// directories with links to a directory outside the tree. 2,000 rounds take
    /// 2-3 s on an idle two-core machine (15-20 s were seen with the cores shared at
    /// a load of 7); the link is met, and refused, 100-300 times in a run.
    #[test]
    fn swapping_a_directory_with_a_link_mid_job_never_reaches_outside() {
        let planted = AtomicUsize::new(0);
        let note = |result: Result<(), TreeError>| match result {
            Err(TreeError::Planted { .. }) => drop(planted.fetch_add(1, Ordering::Relaxed)),
            // The swapper renames a directory over one berth has just made (and
            // opened): making anything in it then finds it gone. A user can do that
            // too; it fails the job, and reaches nothing outside.
            Err(e) if e.is_not_found() => {}
            Err(TreeError::Io { source, .. }) if source.to_string().contains("kept changing") => {}
            Err(e @ (TreeError::Io { .. } | TreeError::MountPoint { .. })) => panic!("{e}"),
            Ok(()) => {}
        };
        let started = Instant::now();
        let (before, after, swaps) = race(2_000, |_, anchor| {
            note(anchor.ensure_chain(&[("apps", 0o750, USER, USER), ("public", 0o700, USER, USER)]).map(drop));
            note((|| {
                let (victim, _) = anchor.ensure_dir("victim", 0o755, 0, 0)?;
                let (b, _) = victim.ensure_chain(&[("a", 0o750, USER, USER), ("b", 0o750, USER, USER)])?;
                write_file(&b, "index.html", "x");
                Ok(())
            })());
            note(anchor.remove_tree("victim").map(drop));
            note(anchor.remove_tree("apps").map(drop));
        });
        let planted = planted.into_inner();
        eprintln!("2,000 rounds in {:?}: {swaps} swaps, {planted} links refused", started.elapsed());
        assert!(swaps > 100 && planted > 0, "the race did not happen: {swaps} swaps, {planted} refused");
        assert_eq!(after, before, "the directory outside the tree was changed");
    }

    /// Proof that the race test bites: the same race against the path-based code
    /// berth used before (`ensure_dir_owned`, `remove_dir_all` of a full path)
    /// reaches the directory outside the tree (in every run tried, `remove_dir_all`
    /// of `apps/public` through the swapped-in link deleted the other `public/`).
    /// Ignored: it demonstrates the bug.
    #[test]
    #[ignore = "demonstrates the bug of the old path-based code; run with --ignored"]
    fn path_based_calls_are_led_outside_by_the_race() {
        let (before, after, _) = race(2_000, |tree, _| {
            let _ = crate::host::fs::ensure_dir_owned(&tree.join("apps/public"), 0o700, USER, USER);
            let _ = crate::host::fs::ensure_dir_owned(&tree.join("victim/a/b"), 0o750, USER, USER);
            let _ = std::fs::remove_dir_all(tree.join("victim/a/b"));
            let _ = std::fs::remove_dir_all(tree.join("apps/public"));
            let _ = std::fs::remove_dir_all(tree.join("apps"));
        });
        assert_ne!(after, before, "the old code was not led outside the tree");
    }

    /// `exchange` swaps two names in one step, renames when the target is absent,
    /// and moves a planted link itself, never what it points to.
    #[test]
    fn exchange_swaps_names_and_never_follows_a_link() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path();
        for (dir, file) in [("fresh", "new"), ("app", "old"), ("outside", "target")] {
            std::fs::create_dir(base.join(dir)).unwrap();
            std::fs::write(base.join(dir).join(file), file).unwrap();
        }
        let dir = Dir::open_trusted(base).unwrap();
        assert!(dir.exchange("fresh", "app").unwrap(), "app existed");
        assert!(base.join("app/new").is_file() && base.join("fresh/old").is_file());
        assert!(!dir.exchange("fresh", "gone").unwrap(), "a plain rename when absent");
        assert!(base.join("gone/old").is_file() && !base.join("fresh").exists());
        std::os::unix::fs::symlink(base.join("outside"), base.join("link")).unwrap();
        assert!(dir.exchange("app", "link").unwrap());
        assert!(std::fs::symlink_metadata(base.join("app")).unwrap().file_type().is_symlink());
        assert!(base.join("link/new").is_file(), "the directory went where the link was");
        assert_eq!(std::fs::read_dir(base.join("outside")).unwrap().count(), 1, "nothing went through the link");
        assert!(dir.exchange("missing", "app").is_err());
    }
}
