//! The renewal loop: the daemon's background check of every AutoSSL certificate.
//!
//! Once at start and then every [`CHECK_EVERY`], each AutoSSL app whose certificate
//! is due (a third of its lifetime left, whatever the lifetime; its domains
//! changed; its file gone) gets an internal `ssl.renew` job, submitted to the
//! engine like any job so it takes its turn with the app's other jobs. The job
//! reports through an `ssl.renewal` event. A failed renewal sets the app's next
//! attempt (spaced out by the job), and the loop leaves the app alone until then.
//! Timing lives in the certificate and the inventory, so a restart neither loses a
//! due renewal nor renews twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::json;
use tokio::sync::mpsc;

use crate::engine::lifecycle;
use crate::host::fs::under_root;
use crate::job::Machine;
use crate::jobs::ssl::{current_cert, renewal_due, renewal_event, RENEW_KIND};
use crate::jobs::Catalogue;
use crate::model::protocol::{JobMsg, SslRenewal};
use crate::model::AppName;
use crate::state::inventory::{Inventory, InventoryStore, SslSource};
use crate::time::unix_millis;
use crate::web::acme::{self, AcmeSettings};
use crate::web::stack::certificate_names;

/// How often certificates are looked at. A 6-day certificate is due 2 days before
/// it expires, so an hour is plenty.
pub const CHECK_EVERY: Duration = Duration::from_secs(3600);
const ARI_REASON: &str = "the CA's renewal information says so";

/// Checks now, then every [`CHECK_EVERY`], until the task is dropped; each due
/// renewal goes to the engine as an internal job.
pub async fn run(inventory: Arc<InventoryStore>, root: PathBuf, acme: Arc<AcmeSettings>, jobs: mpsc::Sender<JobMsg>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tick.tick().await;
        for (app, reason) in check(&inventory, &root, &acme).await {
            if jobs.send(renew_job(&app, reason)).await.is_err() {
                return;
            }
        }
    }
}

/// One check, run here and now (`berth renew`): every due renewal, each through the
/// jobs' lifecycle ([`crate::engine::lifecycle::run_now`]), and each one's `ssl.renewal`
/// event (none for a renewal that found nothing to do).
pub async fn once(machine: &Machine) -> Vec<SslRenewal> {
    let catalogue = Catalogue::new(false);
    let (output, _) = mpsc::channel(1);
    let mut events = Vec::new();
    for (app, reason) in check(&machine.inventory, machine.host.root(), &machine.acme).await {
        let msg = renew_job(&app, reason);
        let ended = lifecycle::run_now(&catalogue, machine, &msg, output.clone()).await;
        events.extend(renewal_event(&msg.params, &ended.status, &machine.inventory));
    }
    events
}

/// The apps whose certificate is due now, by the certificate or by the CA's word.
async fn check(inventory: &Arc<InventoryStore>, root: &Path, acme: &AcmeSettings) -> Vec<(AppName, &'static str)> {
    let (inv, dir) = (inventory.clone(), root.to_owned());
    let found =
        tokio::task::spawn_blocking(move || inv.read(|inv| (due(inv, &dir, SystemTime::now()), autossl(inv)))).await;
    let (mut due, autossl) = found.unwrap_or_default();
    // The CA may ask for an earlier renewal (a revocation ahead, say).
    let not_due: Vec<AppName> = autossl.into_iter().filter(|app| !due.iter().any(|(d, _)| d == app)).collect();
    let account = if not_due.is_empty() { None } else { acme::existing_account(acme).await };
    if let Some(account) = account {
        for app in not_due {
            let Ok(chain) = std::fs::read_to_string(under_root(root, &crate::web::stack::ssl_cert(&app))) else {
                continue;
            };
            if acme::suggested_renewal(&account, &chain).await.is_some_and(|at| at <= SystemTime::now()) {
                due.push((app, ARI_REASON));
            }
        }
    }
    tracing::debug!(due = due.len(), "certificate renewal check");
    for (app, reason) in &due {
        tracing::info!(%app, %reason, "certificate renewal due");
    }
    due
}

/// The internal `ssl.renew` job of `app`.
fn renew_job(app: &str, reason: &str) -> JobMsg {
    JobMsg {
        job_id: format!("renew-{app}-{}", unix_millis(SystemTime::now())),
        kind: RENEW_KIND.into(),
        // The CA's word is not in the certificate: the job must not second-guess it.
        params: json!({"app": app, "force": reason == ARI_REASON}),
        internal: true,
    }
}

/// The AutoSSL apps not waiting for a next attempt.
fn autossl(inventory: &Inventory) -> Vec<AppName> {
    let now = unix_millis(SystemTime::now());
    inventory
        .apps
        .iter()
        .filter(|(_, app)| app.ssl.as_ref().is_some_and(|s| s.source == SslSource::Auto && s.next_attempt_ms <= now))
        .map(|(name, _)| name.clone())
        .collect()
}

/// The AutoSSL apps that need a new certificate at `now`, each with the reason.
pub fn due(inventory: &Inventory, root: &Path, now: SystemTime) -> Vec<(AppName, &'static str)> {
    let mut due = Vec::new();
    for (name, app) in &inventory.apps {
        let Some(ssl) = app.ssl.as_ref().filter(|s| s.source == SslSource::Auto) else { continue };
        if ssl.next_attempt_ms > unix_millis(now) {
            continue;
        }
        let reason = match current_cert(root, name) {
            None => Some("its certificate file is missing or unreadable"),
            Some(info) => renewal_due(ssl, &info, &certificate_names(app), now),
        };
        due.extend(reason.map(|r| (name.clone(), r)));
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::inventory::{App, Ssl};

    fn cert(dir: &Path, app: &str, days: (i64, i64)) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.test".to_string(), "www.a.test".to_string()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(days.0);
        params.not_after = now + time::Duration::days(days.1);
        let path = crate::host::fs::under_root(dir, &crate::web::stack::ssl_cert(app));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, params.self_signed(&key).unwrap().pem()).unwrap();
    }

    fn inventory(source: SslSource, next_attempt_ms: u64) -> Inventory {
        let ssl = Ssl {
            source,
            force: true,
            ordered_for: vec!["a.test".try_into().unwrap(), "www.a.test".try_into().unwrap()],
            failures: 0,
            next_attempt_ms,
        };
        let app = App { ssl: Some(ssl), ..App::fixture(&["a.test"], 0) };
        Inventory { apps: [("shop".try_into().unwrap(), app)].into(), ..Inventory::default() }
    }

    #[test]
    fn only_autossl_certificates_past_two_thirds_of_their_life_are_due() {
        let root = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        cert(root.path(), "shop", (-59, 31));
        assert!(due(&inventory(SslSource::Auto, 0), root.path(), now).is_empty(), "59 of 90 days: not yet");
        cert(root.path(), "shop", (-61, 29));
        assert_eq!(
            due(&inventory(SslSource::Auto, 0), root.path(), now),
            [("shop".try_into().unwrap(), "a third of its lifetime is left")]
        );
        assert!(
            due(&inventory(SslSource::Custom, 0), root.path(), now).is_empty(),
            "custom certificates are the operator's"
        );
        let later = unix_millis(now + Duration::from_secs(60));
        assert!(
            due(&inventory(SslSource::Auto, later), root.path(), now).is_empty(),
            "after a failure, not before the next attempt"
        );
        cert(root.path(), "shop", (-4, 2));
        assert_eq!(
            due(&inventory(SslSource::Auto, 0), root.path(), now).len(),
            1,
            "a 6-day certificate is due with 2 days left"
        );
    }

    #[test]
    fn new_domains_or_a_lost_file_make_a_certificate_due() {
        let root = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let mut inv = inventory(SslSource::Auto, 0);
        assert_eq!(due(&inv, root.path(), now)[0].1, "its certificate file is missing or unreadable");
        cert(root.path(), "shop", (-1, 89));
        inv.apps.get_mut("shop").unwrap().domains.push("b.test".try_into().unwrap());
        assert_eq!(due(&inv, root.path(), now)[0].1, "the app's domains changed");
    }
}
