//! Files on the host: atomic, durable writes and paths placed under `root`.
//!
//! A write is a temp file in the same directory, fsync, rename over the target,
//! fsync of the directory: after a crash the target holds the old bytes or the new
//! ones, never a mix. Secrets (keys, job params) are written with mode 0600.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// `path` (absolute, as on a real host) placed under `root`.
///
/// Panics on a path with `..` or a relative path: host paths are built from
/// validated names, so such a path is a bug, not input.
pub fn under_root(root: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    assert!(path.is_absolute(), "host path must be absolute: {}", path.display());
    assert!(
        path.components().all(|c| !matches!(c, Component::ParentDir)),
        "host path must not contain '..': {}",
        path.display()
    );
    root.join(path.strip_prefix("/").expect("absolute path"))
}

/// Writes `bytes` to `path` atomically with `mode`, creating parent directories.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().ok_or_else(|| io::Error::other("path has no file name"))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        // `mode` at creation is filtered by the umask; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// fsync of a directory, so a rename or unlink in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` (and parents) and sets its mode.
pub fn ensure_dir(dir: &Path, mode: u32) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
}

/// Makes `dir` (and its parents) exist with exactly `mode`, owned by `uid:gid`;
/// true when anything changed. A non-directory in the way is `AlreadyExists`; a
/// symlink is never followed.
pub fn ensure_dir_owned(dir: &Path, mode: u32, uid: u32, gid: u32) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let mut changed = false;
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(io::Error::new(io::ErrorKind::AlreadyExists, "not a directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)?;
            changed = true;
        }
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(dir)?;
    if meta.uid() != uid || meta.gid() != gid {
        std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
        changed = true;
    }
    if meta.permissions().mode() & 0o7777 != mode {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
        changed = true;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_root_joins_absolute_paths() {
        assert_eq!(under_root(Path::new("/tmp/sandbox"), "/etc/nginx"), Path::new("/tmp/sandbox/etc/nginx"));
        assert_eq!(under_root(Path::new("/"), "/etc/nginx"), Path::new("/etc/nginx"));
    }

    #[test]
    #[should_panic(expected = "must not contain")]
    fn under_root_refuses_traversal() {
        under_root(Path::new("/tmp/sandbox"), "/srv/users/../../etc");
    }

    #[test]
    fn ensure_dir_owned_reports_changes_and_refuses_what_is_not_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a/b");
        assert!(ensure_dir_owned(&target, 0o750, 0, 0).unwrap());
        assert!(!ensure_dir_owned(&target, 0o750, 0, 0).unwrap(), "nothing to do the second time");
        assert!(ensure_dir_owned(&target, 0o700, 0, 0).unwrap());
        assert_eq!(fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o700);
        std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
        assert_eq!(
            ensure_dir_owned(&dir.path().join("link"), 0o750, 0, 0).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
    }

    #[test]
    fn write_atomic_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/key.pem");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }
}
