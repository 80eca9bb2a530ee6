//! The host's errors as jobs report them: every conversion from an error of
//! [`crate::host`] to the wire's [`JobError`] is here, each an exhaustive `match`,
//! so `host` knows nothing of jobs or the protocol and a new host error cannot
//! reach the control plane without a code chosen for it.

use crate::host::mysql::MysqlError;
use crate::host::resp::RespError;
use crate::host::tree::{TreeError, SYMLINK};
use crate::host::{ChangeError, HostError};
use crate::job::JobError;

impl From<HostError> for JobError {
    fn from(e: HostError) -> Self {
        match e {
            HostError::Spawn { command, source } => JobError::ToolFailed { command, stderr: source.to_string() },
            HostError::Failed { command, status, stderr } => {
                JobError::ToolFailed { command, stderr: format!("{status}: {stderr}") }
            }
        }
    }
}

impl From<ChangeError> for JobError {
    /// A refused config is `config_invalid` with the tool's words; a failed command
    /// `tool_failed`; a file berth could not read or write `internal`.
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Command(e) => e.into(),
            ChangeError::Refused { tool, path, message } => JobError::ConfigInvalid { tool, path, message },
            ChangeError::ReloadThenStart { service, reload, start } => JobError::ToolFailed {
                command: format!("{service} reload, then start"),
                stderr: format!("{reload}; {start}"),
            },
            e @ ChangeError::DownAfterReload { .. } => {
                JobError::ToolFailed { command: "reload".into(), stderr: e.to_string() }
            }
            ChangeError::Io { path, source } => JobError::Internal(format!("{}: {source}", path.display())),
        }
    }
}

impl From<MysqlError> for JobError {
    fn from(e: MysqlError) -> Self {
        match e {
            e @ MysqlError::NotRunning { .. } => JobError::PreconditionFailed(e.to_string()),
            MysqlError::Failed { what, source } => {
                JobError::ToolFailed { command: format!("MySQL/MariaDB: {what}"), stderr: source.to_string() }
            }
        }
    }
}

impl From<RespError> for JobError {
    /// No Redis is a `precondition_failed` (the operator installs it); a broken
    /// conversation `tool_failed`. Neither text holds a command's arguments.
    fn from(e: RespError) -> Self {
        match e {
            e @ RespError::NotRunning { .. } => JobError::PreconditionFailed(e.to_string()),
            e @ (RespError::Io { .. } | RespError::Protocol { .. }) => {
                JobError::ToolFailed { command: "redis-server".into(), stderr: e.to_string() }
            }
        }
    }
}

impl From<TreeError> for JobError {
    /// A planted entry or a mount point is the user's doing (or an admin's): a
    /// `conflict` naming the path. Anything else is `internal`. A path a user made
    /// very long is shortened in the middle.
    fn from(e: TreeError) -> Self {
        match e {
            TreeError::Planted { path, what: SYMLINK } => JobError::Conflict(format!(
                "{} is a symbolic link; berth does not follow links in a user's directory",
                shown_path(&path)
            )),
            TreeError::Planted { path, what } => JobError::Conflict(format!(
                "{} is {what}, not what berth expects there; berth leaves it in place",
                shown_path(&path)
            )),
            TreeError::MountPoint { path } => JobError::Conflict(format!(
                "{} is a mount point; berth does not remove anything across a mount point and left it in place",
                shown_path(&path)
            )),
            TreeError::Io { path, source } => JobError::Internal(format!("{}: {source}", shown_path(&path))),
        }
    }
}

/// `path` for a message: at most about 200 characters, the middle left out (a user
/// can make a path in their home as long as they like).
fn shown_path(path: &std::path::Path) -> String {
    let text = path.display().to_string();
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 200 {
        return text;
    }
    let head: String = chars[..100].iter().collect();
    let tail: String = chars[chars.len() - 100..].iter().collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::model::protocol::ErrorCode;

    fn failed(command: &str) -> HostError {
        HostError::Failed { command: command.into(), status: "exit status: 1".into(), stderr: "no".into() }
    }

    #[test]
    fn tree_errors_are_conflicts_naming_the_path_or_internal() {
        let job = JobError::from(TreeError::Planted { path: "/srv/users/derek/apps".into(), what: SYMLINK });
        assert_eq!(job.code(), ErrorCode::Conflict);
        assert_eq!(
            job.to_string(),
            "/srv/users/derek/apps is a symbolic link; berth does not follow links in a user's directory"
        );
        let job = JobError::from(TreeError::Planted { path: "/srv/users/derek/apps".into(), what: "a fifo" });
        assert_eq!(job.code(), ErrorCode::Conflict);
        assert_eq!(
            job.to_string(),
            "/srv/users/derek/apps is a fifo, not what berth expects there; berth leaves it in place"
        );
        let job = JobError::from(TreeError::MountPoint { path: "/srv/users/derek/apps/mnt".into() });
        assert_eq!(job.code(), ErrorCode::Conflict);
        assert!(job.to_string().starts_with("/srv/users/derek/apps/mnt is a mount point"), "{job}");
        let io = TreeError::Io { path: "/srv/users/sub".into(), source: std::io::Error::other("refused") };
        let job = JobError::from(io);
        assert_eq!(job.code(), ErrorCode::Internal);
        assert_eq!(job.to_string(), "/srv/users/sub: refused");
    }

    #[test]
    fn host_and_change_errors_keep_their_codes_and_words() {
        let job = JobError::from(failed("/usr/sbin/nginx -t"));
        assert_eq!(job.code(), ErrorCode::ToolFailed);
        assert_eq!(job.to_string(), "/usr/sbin/nginx -t failed: exit status: 1: no");
        let spawn = HostError::Spawn { command: "/usr/sbin/nft".into(), source: std::io::Error::other("gone") };
        assert_eq!(JobError::from(spawn).to_string(), "/usr/sbin/nft failed: gone");

        let job = JobError::from(ChangeError::Command(failed("/usr/sbin/nft -f x")));
        assert_eq!(
            (job.code(), job.to_string()),
            (ErrorCode::ToolFailed, "/usr/sbin/nft -f x failed: exit status: 1: no".into())
        );
        let refused =
            ChangeError::Refused { tool: "nft".into(), path: "/etc/berth/firewall.nft".into(), message: "junk".into() };
        let job = JobError::from(refused);
        assert_eq!(job.code(), ErrorCode::ConfigInvalid);
        assert_eq!(
            job.to_string(),
            "nft rejected the new configuration (/etc/berth/firewall.nft); the previous files are back in place: junk"
        );
        let both = ChangeError::ReloadThenStart {
            service: "nginx".into(),
            reload: failed("reload").to_string(),
            start: failed("start").to_string(),
        };
        let job = JobError::from(both);
        assert_eq!(job.code(), ErrorCode::ToolFailed);
        assert_eq!(
            job.to_string(),
            "nginx reload, then start failed: reload exited with exit status: 1: no; start exited with exit status: 1: no"
        );
        let io = ChangeError::Io { path: PathBuf::from("/etc/nginx/x.conf"), source: std::io::Error::other("full") };
        let job = JobError::from(io);
        assert_eq!((job.code(), job.to_string()), (ErrorCode::Internal, "/etc/nginx/x.conf: full".into()));
    }

    #[test]
    fn a_missing_database_server_is_a_precondition() {
        let job = JobError::from(MysqlError::NotRunning { socket: "/run/mysqld/mysqld.sock".into() });
        assert_eq!(job.code(), ErrorCode::PreconditionFailed);
        assert_eq!(job.to_string(), "the MySQL/MariaDB server is not running (no socket at /run/mysqld/mysqld.sock)");
    }
}
