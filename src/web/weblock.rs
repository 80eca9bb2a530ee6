//! The web-config lock: one writer of the web servers' config at a time.
//!
//! Every code path that renders and applies web config (app create, update and
//! delete, `sysuser.delete`'s app removal, the `ssl.*` jobs, renewals,
//! `server.update`'s re-render, a web `service.restart`, `berth reconcile`) holds it
//! from reading the inventory to the end of its config transaction, so two writers
//! never interleave their files, checks and reloads, and none renders from a
//! record another has just changed.
//!
//! It is an exclusive `flock` on [`LOCK_FILE`] under the root: each holder opens the
//! file anew, so it holds between the daemon's jobs (each on its own thread) and
//! between processes (`berth apply`, `berth reconcile` and `berth renew` beside the
//! daemon). It is released when the guard drops, or when the process dies.
//!
//! The lock is short by design: nothing holds it while it waits on the network. The
//! scheduler's web-stack resource ([`crate::model::resource::Resource::WebStack`]) is another
//! thing: it keeps the daemon's web jobs in arrival order, and a job that then waits
//! on a certificate authority gives it back first ([`crate::job::JobContext::release`]).
//! Such a job takes this lock again only to install what it got, and checks the app
//! again first.
//!
//! The lock is not reentrant: a function that needs it held says so and takes it
//! from its caller, never again itself.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::host::fs::{ensure_dir, under_root};
use crate::job::JobError;

/// The lock file, under the root (`/run`: gone at a reboot, with every holder).
pub const LOCK_FILE: &str = "/run/berth/web-config.lock";

/// Proof that the web-config lock is held; dropping it releases the lock.
#[must_use = "the lock is released when the guard drops"]
pub struct WebConfigLock {
    _flock: Flock<File>,
}

impl std::fmt::Debug for WebConfigLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebConfigLock")
    }
}

/// Takes the web-config lock of the machine at `root`, waiting for the holder if
/// there is one. Blocks: call it from a blocking job or thread, never on the runtime.
pub fn hold(root: &Path) -> Result<WebConfigLock, JobError> {
    let path = under_root(root, LOCK_FILE);
    let io = |e: std::io::Error| JobError::Internal(format!("web-config lock {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        ensure_dir(dir, 0o755).map_err(io)?;
    }
    let open = || OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(&path);
    let file = open().map_err(io)?;
    let flock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(flock) => flock,
        Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
            tracing::debug!("waiting for the web-config lock");
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| io(errno.into()))?
        }
        Err((_, errno)) => return Err(io(errno.into())),
    };
    Ok(WebConfigLock { _flock: flock })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn one_holder_at_a_time_even_on_other_threads_and_released_on_drop() {
        let root = tempfile::tempdir().unwrap();
        let held = hold(root.path()).unwrap();
        let taken = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (root, taken) = (root.path().to_owned(), taken.clone());
            std::thread::spawn(move || {
                let _lock = hold(&root).unwrap();
                taken.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        assert!(!taken.load(Ordering::SeqCst), "a second holder waits");
        drop(held);
        waiter.join().unwrap();
        assert!(taken.load(Ordering::SeqCst), "and gets it once the first lets go");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(under_root(root.path(), LOCK_FILE)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
