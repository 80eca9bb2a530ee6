//! The inventory: what berth manages on this host, kept in `<state_dir>/inventory.json`.
//!
//! It is how berth tells its own system users from every other account: a user that
//! exists but is not here (`root`, `www-data`, an operator's login) is never taken
//! over or deleted. Every change is saved atomically before the job reports it.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::host::fs::write_atomic;

pub const FILE_NAME: &str = "inventory.json";

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// System users berth created, by name.
    #[serde(default)]
    pub users: BTreeMap<String, User>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Unix milliseconds.
    pub created_ms: u64,
}

/// The inventory on disk, shared by the jobs that change it.
#[derive(Debug)]
pub struct InventoryStore {
    path: PathBuf,
    inner: Mutex<Inventory>,
}

impl InventoryStore {
    /// Loads the inventory; a missing file is an empty inventory, an unreadable one
    /// an error (starting empty would let berth forget what it manages).
    pub fn open(state_dir: &Path) -> io::Result<InventoryStore> {
        let path = state_dir.join(FILE_NAME);
        let inventory = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Inventory::default(),
            Err(e) => return Err(e),
        };
        Ok(InventoryStore { path, inner: Mutex::new(inventory) })
    }

    pub fn read<R>(&self, f: impl FnOnce(&Inventory) -> R) -> R {
        f(&self.lock())
    }

    /// Applies `f` and saves the result; on a failed save nothing changes.
    pub fn update<R>(&self, f: impl FnOnce(&mut Inventory) -> R) -> io::Result<R> {
        let mut inner = self.lock();
        let mut next = inner.clone();
        let result = f(&mut next);
        if next != *inner {
            let bytes = serde_json::to_vec_pretty(&next).map_err(io::Error::other)?;
            write_atomic(&self.path, &bytes, 0o600)?;
            *inner = next;
        }
        Ok(result)
    }

    fn lock(&self) -> MutexGuard<'_, Inventory> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
        store.update(|inv| inv.users.insert("derek".into(), User { created_ms: 5 })).unwrap();
        let reopened = InventoryStore::open(dir.path()).unwrap();
        assert_eq!(reopened.read(|inv| inv.users.get("derek").cloned()), Some(User { created_ms: 5 }));
    }

    #[test]
    fn a_failed_save_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = InventoryStore::open(dir.path()).unwrap();
        // A directory where the file should be makes the rename fail.
        std::fs::create_dir(dir.path().join(FILE_NAME)).unwrap();
        assert!(store.update(|inv| inv.users.insert("x".into(), User::default())).is_err());
        assert!(store.read(|inv| inv.users.is_empty()));
    }

    #[test]
    fn an_unreadable_inventory_is_an_error_not_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "{not json").unwrap();
        assert!(InventoryStore::open(dir.path()).is_err());
    }
}
