//! Reloads owed to a config that is already on disk: the write-ahead half of a
//! transaction ([`crate::host::transaction`]).
//!
//! A transaction writes its files, then reloads. If berth dies in between (`kill -9`,
//! the OOM killer, a watchdog restart), the files hold but the servers still serve
//! the old config, and the job's re-run would find nothing to change and reload
//! nothing: `success`, but not live. So before the first file is written, each
//! affected service gets a marker in `/run/berth/pending/<unit>` ("reload" or
//! "restart"); the marker goes once the service serves the new config. Every
//! transaction first takes over the markers it finds. `/run` is emptied by a boot,
//! and after a boot every server reads its files anyway.

use std::io;
use std::path::{Path, PathBuf};

use crate::host::fs::{under_root, write_atomic};
use crate::host::services::Service;

const DIR: &str = "/run/berth/pending";

/// What a service is owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owed {
    Reload,
    Restart,
}

/// The markers under one root.
#[derive(Debug, Clone)]
pub struct Pending {
    dir: PathBuf,
}

impl Pending {
    pub fn under(root: &Path) -> Pending {
        Pending { dir: under_root(root, DIR) }
    }

    /// Every service with a marker, and what it is owed. Markers of services berth
    /// does not know (hand-made files) are ignored; those of a server no longer
    /// installed under `root` (a PHP version removed since) are dropped, or its
    /// check would fail every transaction after.
    pub fn owed_installed(&self, root: &Path) -> io::Result<Vec<(Service, Owed)>> {
        let (owed, gone): (Vec<_>, Vec<_>) = self.owed()?.into_iter().partition(|(service, _)| service.installed(root));
        for (service, _) in &gone {
            self.settle(service)?;
        }
        Ok(owed)
    }

    /// Every service with a marker, and what it is owed (see [`Pending::owed_installed`]).
    pub fn owed(&self) -> io::Result<Vec<(Service, Owed)>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut owed = Vec::new();
        for entry in entries {
            let entry = entry?;
            let Some(service) = entry.file_name().to_str().and_then(Service::from_unit) else { continue };
            let what = match std::fs::read(entry.path())?.as_slice() {
                b"restart" => Owed::Restart,
                _ => Owed::Reload,
            };
            owed.push((service, what));
        }
        owed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(owed)
    }

    /// Records (durably) that `service` is owed `what`, before its files change.
    pub fn promise(&self, service: &Service, what: Owed) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let text: &[u8] = match what {
            Owed::Reload => b"reload",
            Owed::Restart => b"restart",
        };
        write_atomic(&self.dir.join(service.unit()), text, 0o600)
    }

    /// `service` serves its files now.
    pub fn settle(&self, service: &Service) -> io::Result<()> {
        match std::fs::remove_file(self.dir.join(service.unit())) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promises_are_kept_until_settled_and_unknown_markers_are_ignored() {
        let root = tempfile::tempdir().unwrap();
        let pending = Pending::under(root.path());
        assert_eq!(pending.owed().unwrap(), []);
        pending.promise(&Service::PhpFpm("8.2".into()), Owed::Reload).unwrap();
        pending.promise(&Service::Nginx, Owed::Restart).unwrap();
        std::fs::write(root.path().join("run/berth/pending/sshd"), "reload").unwrap();
        let again = Pending::under(root.path());
        assert_eq!(
            again.owed().unwrap(),
            [(Service::Nginx, Owed::Restart), (Service::PhpFpm("8.2".into()), Owed::Reload)]
        );
        again.settle(&Service::Nginx).unwrap();
        again.settle(&Service::Nginx).unwrap();
        assert_eq!(again.owed().unwrap(), [(Service::PhpFpm("8.2".into()), Owed::Reload)]);
        // PHP 8.2 is not installed under this root: its marker goes.
        assert_eq!(again.owed_installed(root.path()).unwrap(), []);
        assert_eq!(again.owed().unwrap(), []);
    }
}
