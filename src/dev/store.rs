//! The embedded store of `berth dev` (`DIR/dev.redb`, redb): the REST API's
//! resources (server, system users, apps, databases), its actions, the highest
//! event `seq` the control plane has stored, and the generated credentials.
//!
//! Everything is JSON text under a `kind/id` key, because the API serves JSON and
//! the records are small. A request's checks and its writes happen in one write
//! transaction ([`Store::write`]), so two requests cannot take the same name. Job
//! params holding secrets live in an action only while its job is pending.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, TableDefinition};
use serde_json::Value;

/// Settings and counters: credentials, `last_seq`, the server record.
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// Resources and actions, keyed `kind/id`.
const RECORDS: TableDefinition<&str, &str> = TableDefinition::new("records");

#[derive(Debug, thiserror::Error)]
#[error("dev store {path}: {message}")]
pub struct StoreError {
    pub path: PathBuf,
    pub message: String,
}

pub struct Store {
    db: Database,
    path: PathBuf,
}

/// The open tables of one write transaction.
pub struct Writer<'t> {
    meta: redb::Table<'t, &'static str, &'static str>,
    records: redb::Table<'t, &'static str, &'static str>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let error = |e: &dyn std::fmt::Display| StoreError { path: path.to_owned(), message: e.to_string() };
        let db = Database::create(path).map_err(|e| error(&e))?;
        // It holds the generated credentials.
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).map_err(|e| error(&e))?;
        let store = Store { db, path: path.to_owned() };
        store.write(|_| ())?;
        Ok(store)
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError { path: self.path.clone(), message: e.to_string() }
    }

    /// Runs `change` in one write transaction and commits it.
    pub fn write<R>(&self, change: impl FnOnce(&mut Writer) -> R) -> Result<R, StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.error(e))?;
        let result = {
            let meta = tx.open_table(META).map_err(|e| self.error(e))?;
            let records = tx.open_table(RECORDS).map_err(|e| self.error(e))?;
            let mut writer = Writer { meta, records };
            change(&mut writer)
        };
        tx.commit().map_err(|e| self.error(e))?;
        Ok(result)
    }

    /// Runs `read` on a consistent view (a write transaction that changes nothing
    /// is as cheap here, and keeps one code path).
    pub fn read<R>(&self, read: impl FnOnce(&mut Writer) -> R) -> Result<R, StoreError> {
        self.write(read)
    }
}

impl Writer<'_> {
    pub fn meta(&self, key: &str) -> Option<String> {
        self.meta.get(key).ok().flatten().map(|v| v.value().to_owned())
    }

    pub fn set_meta(&mut self, key: &str, value: &str) {
        self.meta.insert(key, value).expect("redb insert");
    }

    pub fn delete_meta(&mut self, key: &str) {
        self.meta.remove(key).expect("redb remove");
    }

    /// The meta value `key`, made by `make` and kept the first time.
    pub fn meta_or(&mut self, key: &str, make: impl FnOnce() -> String) -> String {
        if let Some(value) = self.meta(key) {
            return value;
        }
        let value = make();
        self.set_meta(key, &value);
        value
    }

    pub fn get(&self, kind: &str, id: &str) -> Option<Value> {
        let key = format!("{kind}/{id}");
        let text = self.records.get(key.as_str()).ok().flatten()?.value().to_owned();
        serde_json::from_str(&text).ok()
    }

    /// Every record of `kind`, in id order.
    pub fn list(&self, kind: &str) -> Vec<Value> {
        let (start, end) = (format!("{kind}/"), format!("{kind}0"));
        let Ok(range) = self.records.range(start.as_str()..end.as_str()) else { return Vec::new() };
        range.filter_map(|item| serde_json::from_str(item.ok()?.1.value()).ok()).collect()
    }

    /// Stores `record` under its `id`.
    pub fn put(&mut self, kind: &str, record: &Value) {
        let key = format!("{kind}/{}", record["id"].as_str().expect("records have an id"));
        self.records.insert(key.as_str(), record.to_string().as_str()).expect("redb insert");
    }

    pub fn delete(&mut self, kind: &str, id: &str) {
        let key = format!("{kind}/{id}");
        self.records.remove(key.as_str()).expect("redb remove");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_and_meta_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev.redb");
        {
            let store = Store::open(&path).unwrap();
            store
                .write(|w| {
                    w.put("app", &json!({"id": "b", "name": "blog"}));
                    w.put("app", &json!({"id": "a", "name": "shop"}));
                    w.put("apps", &json!({"id": "x"}));
                    w.meta_or("password", || "first".into());
                })
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let (apps, password) = store.read(|w| (w.list("app"), w.meta_or("password", || "second".into()))).unwrap();
        assert_eq!(apps, vec![json!({"id": "a", "name": "shop"}), json!({"id": "b", "name": "blog"})]);
        assert_eq!(password, "first");
        store.write(|w| w.delete("app", "a")).unwrap();
        assert_eq!(store.read(|w| w.get("app", "a")).unwrap(), None);
    }
}
