//! The inventory: what berth manages on this host, kept in `<state_dir>/inventory.json`.
//!
//! It is how berth tells its own system users from every other account: a user that
//! exists but is not here (`root`, `www-data`, an operator's login) is never taken
//! over or deleted. Every change is saved atomically before the job reports it.
//!
//! The daemon and `berth apply` may run at once, so the file is the truth: every
//! read loads it, and every update is a read-modify-write under an exclusive
//! `flock` on `inventory.lock`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::host::fs::write_atomic;

pub use crate::model::inventory::{App, Database, Inventory, Settings, Ssl, SslSource, User, WordPress};

pub const FILE_NAME: &str = "inventory.json";

/// The inventory on disk, shared by the jobs (and processes) that change it.
#[derive(Debug)]
pub struct InventoryStore {
    path: PathBuf,
    lock_path: PathBuf,
    /// Serializes this process's updates (flock is per open file, not per thread).
    local: Mutex<()>,
}

impl InventoryStore {
    /// Opens the inventory and checks it reads: an unreadable file is an error
    /// (starting empty would let berth forget what it manages).
    pub fn open(state_dir: &Path) -> io::Result<InventoryStore> {
        let store = InventoryStore {
            path: state_dir.join(FILE_NAME),
            lock_path: state_dir.join("inventory.lock"),
            local: Mutex::new(()),
        };
        store.load()?;
        Ok(store)
    }

    /// Runs `f` on the inventory as it is on disk now. An unreadable inventory reads
    /// as empty here (the error was refused at open; a later one is logged).
    pub fn read<R>(&self, f: impl FnOnce(&Inventory) -> R) -> R {
        let inventory = self.load().unwrap_or_else(|e| {
            tracing::error!(path = %self.path.display(), error = %e, "inventory unreadable");
            Inventory::default()
        });
        f(&inventory)
    }

    /// Applies `f` to the inventory on disk and saves the result, all under the lock;
    /// on a failed save nothing changes.
    pub fn update<R>(&self, f: impl FnOnce(&mut Inventory) -> R) -> io::Result<R> {
        let _local = self.local.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let lock_file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&self.lock_path)?;
        let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| io::Error::from(errno))?;
        let current = self.load()?;
        let mut next = current.clone();
        let result = f(&mut next);
        if next != current {
            let bytes = serde_json::to_vec_pretty(&next).map_err(io::Error::other)?;
            write_atomic(&self.path, &bytes, 0o600)?;
        }
        Ok(result)
    }

    fn load(&self) -> io::Result<Inventory> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", self.path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Inventory::default()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_saved_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = InventoryStore::open(dir.path()).unwrap();
        assert!(store.read(|inv| inv.users.is_empty()));
        store.update(|inv| inv.users.insert("derek".try_into().unwrap(), User { created_ms: 5 })).unwrap();
        let reopened = InventoryStore::open(dir.path()).unwrap();
        assert_eq!(reopened.read(|inv| inv.users.get("derek").cloned()), Some(User { created_ms: 5 }));
    }

    #[test]
    fn a_failed_save_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = InventoryStore::open(dir.path()).unwrap();
        // A directory where the file should be makes the rename fail.
        std::fs::create_dir(dir.path().join(FILE_NAME)).unwrap();
        assert!(store.update(|inv| inv.users.insert("xavier".try_into().unwrap(), User::default())).is_err());
        assert!(store.read(|inv| inv.users.is_empty()));
    }

    #[test]
    fn two_stores_on_one_file_see_each_others_updates() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = InventoryStore::open(dir.path()).unwrap();
        let apply = InventoryStore::open(dir.path()).unwrap();
        daemon.update(|inv| inv.users.insert("alice".try_into().unwrap(), User::default())).unwrap();
        apply.update(|inv| inv.users.insert("bob".try_into().unwrap(), User::default())).unwrap();
        assert_eq!(daemon.read(|inv| inv.users.len()), 2, "neither update is lost");
    }

    #[test]
    fn an_inventory_from_before_settings_loads_with_todays_behaviour() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), r#"{"users": {}, "apps": {}, "databases": {}}"#).unwrap();
        let settings = InventoryStore::open(dir.path()).unwrap().read(|inv| inv.settings.clone());
        assert_eq!(settings, Settings::default());
        assert!(settings.deny_unknown_domains && !settings.firewall && !settings.autoupdates);
    }

    #[test]
    fn an_unreadable_inventory_is_an_error_not_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "{not json").unwrap();
        assert!(InventoryStore::open(dir.path()).is_err());
    }

    #[test]
    fn a_hand_edited_value_the_rules_refuse_is_an_error_naming_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let text = r#"{"users": {"derek": {"created_ms": 1}}, "apps": {"Blog": {"sysuser": "derek",
            "runtime": "php8.3", "domains": [], "stack": "nginx", "created_ms": 2}}}"#;
        std::fs::write(&path, text).unwrap();
        let err = InventoryStore::open(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let expected = format!(
            "{}: name: app name may only contain lowercase letters and digits; found 'B' in 'Blog' at line 1 column ",
            path.display()
        );
        assert!(err.to_string().starts_with(&expected), "{err}");
        // Nothing rewrites it: an update fails, and the file stays as the operator left it.
        let store =
            InventoryStore { path: path.clone(), lock_path: dir.path().join("inventory.lock"), local: Mutex::new(()) };
        assert!(store.update(|inv| inv.uid_high_water = 7).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
}
