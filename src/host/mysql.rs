//! The MySQL or MariaDB server on the host, through a real client library over
//! the local socket (unix-socket authentication as root, as Debian and Ubuntu set
//! it up; the socket and user are in the agent config).
//!
//! Identifiers have passed `validate` and are quoted besides. Values go as bound
//! parameters wherever the server allows them; `CREATE USER`, `ALTER USER` and
//! `GRANT` take none, so for passwords MariaDB is given the
//! `mysql_native_password` hash berth computes (`IDENTIFIED BY PASSWORD '*…'`:
//! the password itself never travels), and MySQL 8 a quoted literal under a
//! session `sql_mode` where the quoting holds. Nothing here logs a statement.

use std::path::{Path, PathBuf};

use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder};

use crate::model::Secret;

/// How berth reaches the server.
#[derive(Debug, Clone, PartialEq)]
pub struct MysqlSettings {
    pub socket: PathBuf,
    pub user: String,
}

impl MysqlSettings {
    pub const DEFAULT_SOCKET: &'static str = "/run/mysqld/mysqld.sock";

    pub fn under(root: &Path) -> Self {
        MysqlSettings { socket: crate::host::fs::under_root(root, Self::DEFAULT_SOCKET), user: "root".into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    Mysql,
}

/// Why the database server did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum MysqlError {
    #[error("the MySQL/MariaDB server is not running (no socket at {})", socket.display())]
    NotRunning { socket: PathBuf },
    /// `what` names the statement, never its text (it may hold a hash).
    #[error("MySQL/MariaDB: {what} failed: {source}")]
    Failed {
        what: String,
        #[source]
        source: mysql::Error,
    },
}

pub struct Server {
    conn: Conn,
    flavor: Flavor,
}

impl Server {
    pub fn connect(settings: &MysqlSettings) -> Result<Server, MysqlError> {
        if !settings.socket.exists() {
            return Err(MysqlError::NotRunning { socket: settings.socket.clone() });
        }
        let opts = OptsBuilder::new()
            .socket(Some(settings.socket.to_string_lossy()))
            .user(Some(settings.user.clone()))
            .prefer_socket(true);
        let mut conn = Conn::new(opts).map_err(|e| tool("connect", e))?;
        let version: String =
            conn.query_first("SELECT VERSION()").map_err(|e| tool("SELECT VERSION()", e))?.unwrap_or_default();
        let flavor = if version.contains("MariaDB") { Flavor::MariaDb } else { Flavor::Mysql };
        if flavor == Flavor::Mysql {
            // Quoted literals must mean what they say: backslash escapes on.
            conn.query_drop("SET SESSION sql_mode = REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', '')")
                .map_err(|e| tool("SET sql_mode", e))?;
        }
        Ok(Server { conn, flavor })
    }

    pub fn database_exists(&mut self, name: &str) -> Result<bool, MysqlError> {
        let sql = "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?";
        Ok(self.lookup("the database", sql, (name,))?.is_some())
    }

    pub fn user_exists(&mut self, user: &str) -> Result<bool, MysqlError> {
        let sql = "SELECT User FROM mysql.user WHERE User = ? AND Host = 'localhost'";
        Ok(self.lookup("the user", sql, (user,))?.is_some())
    }

    /// The first column of the first row of a bound query.
    fn lookup(
        &mut self,
        what: &str,
        sql: &str,
        params: impl Into<mysql::Params>,
    ) -> Result<Option<String>, MysqlError> {
        self.conn.exec_first(sql, params).map_err(|e| tool(&format!("look up {what}"), e))
    }

    /// Creates the database if it is not there; true when it was created.
    pub fn create_database(&mut self, name: &str) -> Result<bool, MysqlError> {
        if self.database_exists(name)? {
            return Ok(false);
        }
        let sql = format!("CREATE DATABASE {} CHARACTER SET utf8mb4", ident(name));
        self.conn.query_drop(sql).map_err(|e| tool("CREATE DATABASE", e))?;
        Ok(true)
    }

    /// Creates the user with `password` if it is not there; true when it was created.
    pub fn create_user(&mut self, user: &str, password: &Secret) -> Result<bool, MysqlError> {
        if self.user_exists(user)? {
            return Ok(false);
        }
        let sql = format!("CREATE USER {} {}", account(user), self.identified_by(password));
        self.conn.query_drop(sql).map_err(|e| tool("CREATE USER", e))?;
        Ok(true)
    }

    /// Sets the password unless it already holds; true when it changed.
    pub fn set_password(&mut self, user: &str, password: &Secret) -> Result<bool, MysqlError> {
        if self.password_holds(user, password)? {
            return Ok(false);
        }
        let sql = format!("ALTER USER {} {}", account(user), self.identified_by(password));
        self.conn.query_drop(sql).map_err(|e| tool("ALTER USER", e))?;
        Ok(true)
    }

    /// Grants every privilege on `database` (and nothing else) to `user`; true when new.
    pub fn grant_all(&mut self, database: &str, user: &str) -> Result<bool, MysqlError> {
        let sql = "SELECT Db FROM mysql.db WHERE Db = ? AND User = ? AND Host = 'localhost'";
        if self.lookup("the grant", sql, (database, user))?.is_some() {
            return Ok(false);
        }
        let sql = format!("GRANT ALL PRIVILEGES ON {}.* TO {}", ident(database), account(user));
        self.conn.query_drop(sql).map_err(|e| tool("GRANT", e))?;
        Ok(true)
    }

    /// Drops the database if it is there; true when it was.
    pub fn drop_database(&mut self, name: &str) -> Result<bool, MysqlError> {
        let existed = self.database_exists(name)?;
        if existed {
            self.conn.query_drop(format!("DROP DATABASE {}", ident(name))).map_err(|e| tool("DROP DATABASE", e))?;
        }
        Ok(existed)
    }

    /// Drops the user if it is there; true when it was.
    pub fn drop_user(&mut self, user: &str) -> Result<bool, MysqlError> {
        let existed = self.user_exists(user)?;
        if existed {
            self.conn.query_drop(format!("DROP USER {}", account(user))).map_err(|e| tool("DROP USER", e))?;
        }
        Ok(existed)
    }

    fn password_holds(&mut self, user: &str, password: &Secret) -> Result<bool, MysqlError> {
        match self.flavor {
            Flavor::MariaDb => {
                let sql = "SELECT authentication_string FROM mysql.user WHERE User = ? AND Host = 'localhost'";
                let stored = self.lookup("the password", sql, (user,))?;
                Ok(stored.as_deref() == Some(native_hash(password).as_str()))
            }
            // MySQL 8's caching_sha2 hash cannot be recomputed here: set it again.
            Flavor::Mysql => Ok(false),
        }
    }

    fn identified_by(&self, password: &Secret) -> String {
        match self.flavor {
            Flavor::MariaDb => format!("IDENTIFIED BY PASSWORD '{}'", native_hash(password)),
            Flavor::Mysql => format!("IDENTIFIED BY {}", literal(password.expose())),
        }
    }
}

/// `` `name` `` (backticks doubled; names are validated before they get here).
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `'user'@'localhost'`.
fn account(user: &str) -> String {
    format!("{}@'localhost'", literal(user))
}

/// A single-quoted string literal: quotes doubled, backslashes escaped (the session
/// has backslash escapes on), and no control characters (validation refuses them).
fn literal(value: &str) -> String {
    debug_assert!(!value.chars().any(char::is_control));
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// MariaDB's `mysql_native_password` hash: `*` and the hex of SHA1(SHA1(password)).
fn native_hash(password: &Secret) -> String {
    use ring::digest::{digest, SHA1_FOR_LEGACY_USE_ONLY as SHA1};
    let inner = digest(&SHA1, password.expose().as_bytes());
    let outer = digest(&SHA1, inner.as_ref());
    let hex: String = outer.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    format!("*{hex}")
}

/// A server error, with the statement's name but never its text (it may hold a hash).
fn tool(what: &str, e: mysql::Error) -> MysqlError {
    MysqlError::Failed { what: what.to_owned(), source: e }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_hash_matches_the_servers_password_function() {
        // SELECT PASSWORD('hunter2') on MariaDB.
        assert_eq!(native_hash(&Secret::new("hunter2")), "*58815970BE77B3720276F63DB198B1FA42E5CC02");
    }

    #[test]
    fn quoting_keeps_hostile_values_inside_their_quotes() {
        assert_eq!(ident("my-db"), "`my-db`");
        assert_eq!(ident("a`b"), "`a``b`");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal(r"back\'; DROP TABLE x; --"), r"'back\\''; DROP TABLE x; --'");
        assert_eq!(account("app_user"), "'app_user'@'localhost'");
    }
}
