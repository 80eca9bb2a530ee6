//! A set of config files changed as one.
//!
//! Bottlerocket's render, write, restart, made atomic and fakeable: each file is
//! written atomically (or removed); then each service whose files changed runs its
//! own check (`nginx -t`, `apachectl -t`, `php-fpm -t`). A failed check puts every
//! previous file back exactly, and the job ends in `config_invalid` with the
//! tool's words, so the other sites never see the broken config. Otherwise each
//! affected service reloads once (or starts, if it was not running), and the
//! transaction returns only when the new config serves new connections
//! ([`crate::host::generation`]): a job's `success` means live. Files whose content
//! already holds change nothing and reload nothing, unless a transaction that
//! wrote them died before its reload ([`crate::host::pending`]).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::host::fs::{under_root, write_atomic};
use crate::host::generation::Generation;
use crate::host::pending::{Owed, Pending};
use crate::host::services::{Service, Services};
use crate::host::{ChangeError, Host, HostError};

/// One file's desired state, and the service that reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct FileChange {
    pub path: PathBuf,
    /// `None` removes the file.
    pub content: Option<Vec<u8>>,
    pub mode: u32,
    pub service: Service,
    /// The service must restart, not reload, for this file to count (a systemd
    /// unit drop-in: limits apply to a new process).
    pub restart: bool,
}

impl FileChange {
    pub fn write(path: PathBuf, content: impl Into<Vec<u8>>, mode: u32, service: Service) -> Self {
        FileChange { path, content: Some(content.into()), mode, service, restart: false }
    }

    pub fn remove(path: PathBuf, service: Service) -> Self {
        FileChange { path, content: None, mode: 0, service, restart: false }
    }

    /// A systemd drop-in of `service`'s unit: a change means daemon-reload and restart.
    pub fn unit_drop_in(path: PathBuf, content: impl Into<Vec<u8>>, service: Service) -> Self {
        FileChange { restart: true, ..FileChange::write(path, content, 0o644, service) }
    }
}

/// What a transaction did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Applied {
    pub changed: Vec<PathBuf>,
    pub reloaded: Vec<Service>,
    pub restarted: Vec<Service>,
    /// Whether systemd re-read its units (once, for every drop-in that changed).
    pub daemon_reloaded: bool,
}

/// A file as it was before the transaction.
struct Previous {
    path: PathBuf,
    content: Before,
}

/// What stood at a path: restored exactly, a symlink as a symlink.
#[derive(Debug, Clone, PartialEq)]
enum Before {
    Absent,
    File(Vec<u8>, u32),
    Symlink(PathBuf),
}

/// Applies `changes`, checks, reloads; see the module docs.
pub fn apply(host: &dyn Host, services: &Services, changes: &[FileChange]) -> Result<Applied, ChangeError> {
    let pending = Pending::under(host.root());
    let marker_error = |e: io::Error| io_error(&under_root(host.root(), "/run/berth/pending"), e);
    // What an earlier transaction wrote but did not live to reload.
    let owed = pending.owed_installed(host.root()).map_err(marker_error)?;
    let mut affected: Vec<Service> = owed.iter().map(|(service, _)| service.clone()).collect();
    let mut restart: Vec<Service> =
        owed.iter().filter(|(_, what)| *what == Owed::Restart).map(|(service, _)| service.clone()).collect();
    let mut writes = Vec::new();
    for change in changes {
        let before = read(&change.path).map_err(|e| io_error(&change.path, e))?;
        if !holds(&before, change) {
            writes.push((change, before));
        }
    }
    let mut touched: Vec<Service> = Vec::new();
    for (change, _) in &writes {
        if !touched.contains(&change.service) {
            touched.push(change.service.clone());
        }
        if change.restart && !restart.contains(&change.service) {
            restart.push(change.service.clone());
        }
    }
    // Promised before the first write, so a crash after it still leads to the reload
    // (one marker per service: a restart if any of its files asks for one).
    let mut promised = Vec::new();
    for service in touched {
        let what = if restart.contains(&service) { Owed::Restart } else { Owed::Reload };
        pending.promise(&service, what).map_err(marker_error)?;
        promised.push((service.clone(), what));
        if !affected.contains(&service) {
            affected.push(service);
        }
    }
    let mut previous = Vec::new();
    for (change, before) in writes {
        previous.push(Previous { path: change.path.clone(), content: before });
        let written = match &change.content {
            Some(content) => write_atomic(&change.path, content, change.mode),
            None => std::fs::remove_file(&change.path),
        };
        if let Err(e) = written {
            restore(&previous);
            unpromise(&pending, &promised, &owed);
            return Err(io_error(&change.path, e));
        }
    }
    for service in &affected {
        if let Err(e) = host.run(&services.check(service)) {
            restore(&previous);
            unpromise(&pending, &promised, &owed);
            let path = changes.iter().find(|c| &c.service == service).map(|c| c.path.display().to_string());
            return Err(match e {
                HostError::Failed { stderr, .. } => {
                    ChangeError::Refused { tool: service.unit(), path: path.unwrap_or_default(), message: stderr }
                }
                spawn @ HostError::Spawn { .. } => spawn.into(),
            });
        }
    }
    let mut daemon_reloaded = false;
    if !restart.is_empty() {
        if let Some(daemon_reload) = services.daemon_reload() {
            host.run(&daemon_reload)?;
            daemon_reloaded = true;
        }
    }
    let (mut reloaded, mut restarted) = (Vec::new(), Vec::new());
    // Every server is signalled first, then waited for: their reloads overlap. Apache
    // goes first: on a fresh server it may hold port 80 until its new ports.conf
    // moves it, and an nginx that has to start needs that port.
    affected.sort_by_key(|service| *service != Service::Apache);
    let deadline = std::time::Instant::now() + crate::host::LIVE_PATIENCE;
    let mut waiting: Vec<(Service, Generation)> = Vec::new();
    let apache_first = |waiting: &mut Vec<(Service, Generation)>| -> Result<(), ChangeError> {
        if let Some(at) = waiting.iter().position(|(s, _)| *s == Service::Apache) {
            let (apache, before) = waiting.remove(at);
            host.until_live(services, &apache, &before, deadline)?;
            pending.settle(&apache).map_err(marker_error)?;
        }
        Ok(())
    };
    for service in affected {
        let before = host.generation(services, &service);
        if restart.contains(&service) {
            if service == Service::Nginx {
                apache_first(&mut waiting)?;
            }
            host.run(&services.restart(&service))?;
            waiting.push((service.clone(), before));
            restarted.push(service);
            continue;
        }
        if let Err(reload) = host.run(&services.reload(&service)) {
            // Not running: start it. If that fails too, say both.
            if service == Service::Nginx {
                apache_first(&mut waiting)?;
            }
            host.run(&services.start(&service)).map_err(|start| ChangeError::ReloadThenStart {
                service: service.to_string(),
                reload: reload.to_string(),
                start: start.to_string(),
            })?;
        }
        waiting.push((service.clone(), before));
        reloaded.push(service);
    }
    // One deadline for all of them: the waits overlap, they do not add up.
    for (service, before) in &waiting {
        host.until_live(services, service, before, deadline)?;
        pending.settle(service).map_err(marker_error)?;
    }
    Ok(Applied { changed: previous.into_iter().map(|p| p.path).collect(), reloaded, restarted, daemon_reloaded })
}

/// The paths of `changes` whose file does not hold yet: what [`apply`] would write,
/// found without writing anything (`berth reconcile --check`, `upgrade_required`).
pub fn unapplied(changes: &[FileChange]) -> Result<Vec<PathBuf>, ChangeError> {
    let mut paths = Vec::new();
    for change in changes {
        let before = read(&change.path).map_err(|e| io_error(&change.path, e))?;
        if !holds(&before, change) {
            paths.push(change.path.clone());
        }
    }
    Ok(paths)
}

fn holds(before: &Before, change: &FileChange) -> bool {
    match (before, &change.content) {
        (Before::File(bytes, mode), Some(content)) => *bytes == *content && *mode == change.mode,
        (Before::Absent, None) => true,
        _ => false,
    }
}

/// Reloads `service` with no change of config (its cached code must go: a
/// restore's new files under the same paths, which PHP's opcache may keep for its
/// `revalidate_freq`), started when it is not running, and waits until the new
/// generation serves.
pub fn reload_live(host: &dyn Host, services: &Services, service: &Service) -> Result<(), ChangeError> {
    let before = host.generation(services, service);
    if let Err(reload) = host.run(&services.reload(service)) {
        host.run(&services.start(service)).map_err(|start| ChangeError::ReloadThenStart {
            service: service.to_string(),
            reload: reload.to_string(),
            start: start.to_string(),
        })?;
    }
    host.until_live(services, service, &before, std::time::Instant::now() + crate::host::LIVE_PATIENCE)
}

/// Takes back the promises of a transaction whose files were put back, but for
/// what was owed before it began.
fn unpromise(pending: &Pending, promised: &[(Service, Owed)], owed: &[(Service, Owed)]) {
    for (service, what) in promised {
        let earlier = owed.iter().find(|(s, _)| s == service).map(|(_, w)| *w);
        let kept = match earlier {
            None => pending.settle(service),
            Some(earlier) if earlier != *what => pending.promise(service, earlier),
            Some(_) => Ok(()),
        };
        if let Err(e) = kept {
            tracing::error!(service = %service, error = %e, "cannot take back a pending reload marker");
        }
    }
}

/// Puts every changed file back as it was, newest first.
fn restore(previous: &[Previous]) {
    for file in previous.iter().rev() {
        let gone = || {
            std::fs::remove_file(&file.path)
                .or_else(|e| if e.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
        };
        let restored = match &file.content {
            Before::File(bytes, mode) => write_atomic(&file.path, bytes, *mode),
            Before::Symlink(target) => gone().and_then(|()| std::os::unix::fs::symlink(target, &file.path)),
            Before::Absent => gone(),
        };
        if let Err(e) = restored {
            tracing::error!(path = %file.path.display(), error = %e, "cannot restore a config file after a failed check");
        }
    }
}

fn read(path: &Path) -> io::Result<Before> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Ok(Before::Symlink(std::fs::read_link(path)?)),
        Ok(meta) => Ok(Before::File(std::fs::read(path)?, meta.permissions().mode() & 0o7777)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Before::Absent),
        Err(e) => Err(e),
    }
}

fn io_error(path: &Path, e: io::Error) -> ChangeError {
    ChangeError::Io { path: path.to_owned(), source: e }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;

    fn nginx_file(dir: &Path, name: &str, content: &str) -> FileChange {
        FileChange::write(dir.join(name), content, 0o644, Service::Nginx)
    }

    #[test]
    fn changed_files_are_checked_and_each_service_reloads_once() {
        let dir = tempfile::tempdir().unwrap();
        let host = FakeHost::new(dir.path());
        let services = Services::detect(dir.path());
        let changes = [
            nginx_file(dir.path(), "a.conf", "server {}"),
            nginx_file(dir.path(), "b.conf", "server {}"),
            FileChange::write(dir.path().join("pool.conf"), "[app]", 0o644, Service::PhpFpm("8.2".into())),
        ];
        let applied = apply(&host, &services, &changes).unwrap();
        assert_eq!(applied.changed.len(), 3);
        assert_eq!(applied.reloaded, [Service::Nginx, Service::PhpFpm("8.2".into())]);
        let ran = host.commands();
        assert_eq!(ran.iter().filter(|c| c.contains("nginx") && c.contains("-t")).count(), 1);
        assert_eq!(ran.iter().filter(|c| c.contains("-s reload")).count(), 1, "{ran:?}");
        assert!(ran.iter().position(|c| c.contains("-t")) < ran.iter().position(|c| c.contains("reload")));
        let signalled = ran.iter().rposition(|c| c.contains("reload") || c.contains("USR2")).unwrap();
        assert_eq!(
            ran[signalled + 1..],
            ["live nginx", "live php8.2-fpm"],
            "every server signalled, then each waited for until its new config serves: {ran:?}"
        );
    }

    #[test]
    fn kill_between_write_and_reload_regression() {
        // Seen under systemd: app.create killed after its files were written but
        // before the reload; the re-run found every file in place, reloaded nothing
        // and said success while Apache answered 403 for the new domain.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/sbin")).unwrap();
        std::fs::write(dir.path().join("usr/sbin/nginx"), "").unwrap();
        let services = Services::detect(dir.path());
        let changes = [nginx_file(dir.path(), "a.conf", "server {}")];
        let dying = FakeHost::new(dir.path());
        // (A reload that never took effect stands in for the kill: the same files on
        // disk, the same marker left, nothing live.)
        dying.fail_when("live nginx", "");
        assert!(apply(&dying, &services, &changes).is_err(), "the first run dies before nginx reads its files");
        let host = FakeHost::new(dir.path());
        let rerun = apply(&host, &services, &changes).unwrap();
        assert!(rerun.changed.is_empty(), "the files were already in place");
        assert_eq!(rerun.reloaded, [Service::Nginx], "but nginx never read them: {:?}", host.commands());
        let third = FakeHost::new(dir.path());
        assert_eq!(apply(&third, &services, &changes).unwrap(), Applied::default(), "the debt is paid once");
    }

    #[test]
    fn nginx_restart_while_apache_holds_port_80_regression() {
        // Seen under systemd on a fresh server where Apache had won port 80 at boot:
        // the first app.create restarted nginx (its new drop-in) before Apache had
        // moved to its new port, and nginx failed to start.
        let dir = tempfile::tempdir().unwrap();
        let host = FakeHost::new(dir.path());
        let services = Services::detect(dir.path());
        let changes = [
            FileChange::unit_drop_in(dir.path().join("nginx.conf"), "[Service]", Service::Nginx),
            FileChange::unit_drop_in(dir.path().join("apache.conf"), "[Service]", Service::Apache),
            FileChange::write(dir.path().join("ports.conf"), "Listen 127.0.0.1:8081", 0o644, Service::Apache),
        ];
        apply(&host, &services, &changes).unwrap();
        let ran = host.commands();
        let live_apache = ran.iter().position(|c| c == "live apache2").unwrap();
        let nginx_signalled = ran.iter().position(|c| c.contains("nginx -c") && !c.contains(" -t")).unwrap();
        assert!(live_apache < nginx_signalled, "Apache is live on its new port before nginx (re)starts: {ran:?}");
    }

    #[test]
    fn a_drop_in_before_a_plain_file_still_promises_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/sbin")).unwrap();
        std::fs::write(dir.path().join("usr/sbin/nginx"), "").unwrap();
        let services = Services::detect(dir.path());
        let changes = [
            FileChange::unit_drop_in(dir.path().join("limits.conf"), "[Service]", Service::Nginx),
            nginx_file(dir.path(), "a.conf", "server {}"),
        ];
        let dying = FakeHost::new(dir.path());
        dying.fail_when("live nginx", "");
        assert!(apply(&dying, &services, &changes).is_err());
        assert_eq!(Pending::under(dir.path()).owed().unwrap(), [(Service::Nginx, Owed::Restart)]);
    }

    #[test]
    fn a_refused_check_takes_back_its_pending_reload() {
        let dir = tempfile::tempdir().unwrap();
        let services = Services::detect(dir.path());
        let host = FakeHost::new(dir.path());
        host.fail_when("-t", "bad config");
        assert!(apply(&host, &services, &[nginx_file(dir.path(), "a.conf", "server {")]).is_err());
        assert_eq!(Pending::under(dir.path()).owed().unwrap(), [], "nothing was written, nothing is owed");
    }

    #[test]
    fn what_already_holds_changes_nothing_and_reloads_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let host = FakeHost::new(dir.path());
        let services = Services::detect(dir.path());
        let changes = [
            nginx_file(dir.path(), "a.conf", "server {}"),
            FileChange::remove(dir.path().join("gone"), Service::Nginx),
        ];
        apply(&host, &services, &changes).unwrap();
        let before = host.commands().len();
        let applied = apply(&host, &services, &changes).unwrap();
        assert_eq!(applied, Applied::default());
        assert_eq!(host.commands().len(), before, "no check, no reload");
    }

    #[test]
    fn a_failed_check_restores_every_file_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let host = FakeHost::new(dir.path());
        let services = Services::detect(dir.path());
        std::fs::write(dir.path().join("old.conf"), "old").unwrap();
        std::fs::set_permissions(dir.path().join("old.conf"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::write(dir.path().join("doomed.conf"), "still here").unwrap();
        std::os::unix::fs::symlink("../sites-available/default", dir.path().join("default")).unwrap();
        host.fail_when("-t", "nginx: [emerg] unexpected \"}\" in new.conf:1");
        let changes = [
            nginx_file(dir.path(), "old.conf", "new"),
            nginx_file(dir.path(), "new.conf", "broken }"),
            FileChange::remove(dir.path().join("doomed.conf"), Service::Nginx),
            FileChange::remove(dir.path().join("default"), Service::Nginx),
        ];
        let err = apply(&host, &services, &changes).unwrap_err();
        assert!(matches!(err, ChangeError::Refused { .. }), "{err:?}");
        assert!(err.to_string().contains("unexpected \"}\""), "{err}");
        assert_eq!(std::fs::read_to_string(dir.path().join("old.conf")).unwrap(), "old");
        assert_eq!(std::fs::metadata(dir.path().join("old.conf")).unwrap().permissions().mode() & 0o777, 0o640);
        assert!(!dir.path().join("new.conf").exists());
        assert_eq!(std::fs::read_to_string(dir.path().join("doomed.conf")).unwrap(), "still here");
        assert_eq!(std::fs::read_link(dir.path().join("default")).unwrap(), Path::new("../sites-available/default"));
        assert!(!host.commands().iter().any(|c| c.contains("reload")), "nothing reloads a broken config");
    }

    #[test]
    fn a_unit_drop_in_means_daemon_reload_and_restart_instead_of_reload() {
        let dir = tempfile::tempdir().unwrap();
        let host = FakeHost::new(Path::new("/"));
        let services = Services::systemd_for_tests();
        let changes = [
            FileChange::unit_drop_in(
                dir.path().join("nginx.service.d/berth.conf"),
                "[Service]\nLimitNOFILE=65536\n",
                Service::Nginx,
            ),
            nginx_file(dir.path(), "a.conf", "x"),
            FileChange::write(dir.path().join("pool.conf"), "[app]", 0o644, Service::PhpFpm("8.2".into())),
        ];
        let applied = apply(&host, &services, &changes).unwrap();
        assert_eq!(applied.restarted, [Service::Nginx]);
        assert_eq!(applied.reloaded, [Service::PhpFpm("8.2".into())]);
        let ran = host.commands();
        let tail: Vec<&str> = ran.iter().skip(2).map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "/usr/bin/systemctl daemon-reload",
                "/usr/bin/systemctl restart nginx",
                "/usr/bin/systemctl reload-or-restart php8.2-fpm",
                "live nginx",
                "live php8.2-fpm"
            ],
            "{ran:?}"
        );
    }

    #[test]
    fn a_service_that_is_not_running_is_started() {
        let dir = tempfile::tempdir().unwrap();
        let host = FakeHost::new(dir.path());
        host.fail_when("-s reload", "nginx: [error] invalid PID number \"\"");
        let applied = apply(&host, &Services::detect(dir.path()), &[nginx_file(dir.path(), "a.conf", "x")]).unwrap();
        assert_eq!(applied.reloaded, [Service::Nginx]);
        let mut ran = host.commands();
        assert_eq!(ran.pop().unwrap(), "live nginx", "a start is waited for too");
        let start = ran.pop().unwrap();
        assert!(start.ends_with(&format!("-p {}/etc/nginx", dir.path().display())), "started: {start}");
    }
}
