//! The ACME client: certificates for an app's domains from the configured CA
//! (Let's Encrypt by default), validated over HTTP-01 through nginx.
//!
//! One account per agent and directory, its key kept in `state_dir/acme/` (0600).
//! Every app's vhost serves `/.well-known/acme-challenge/` from [`CHALLENGE_DIR`],
//! so an order needs no config change: the challenge files are written, the CA
//! fetches them, and they are removed. Before ordering, [`probe`] asks which names
//! really reach this server, and [`ledger`] keeps berth inside the CA's rate limits.

mod http;
pub mod ledger;
pub mod probe;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

pub use crate::config::{AcmeSettings, LETSENCRYPT, LETSENCRYPT_STAGING};
use crate::host::fs::{ensure_dir, under_root, write_atomic};
use crate::web::certs::CertInfo;

/// Where challenge files are served from (under `root`), by every app's vhost.
pub const CHALLENGE_DIR: &str = "/run/berth/acme-challenge";
const ACCOUNT_GONE: &str = "urn:ietf:params:acme:error:accountDoesNotExist";
/// How long the CA gets to validate and issue.
const ORDER_PATIENCE: Duration = Duration::from_secs(90);

/// How the order is polled: soon (a CA often validates in well under a second),
/// then less and less often; a `Retry-After` from the CA takes precedence.
fn polling() -> RetryPolicy {
    RetryPolicy::new().initial_delay(Duration::from_millis(100)).backoff(1.5).timeout(ORDER_PATIENCE)
}

/// The account and the rate-limit ledger's directory: `acme/` in the agent's state dir.
fn dir(settings: &AcmeSettings) -> PathBuf {
    settings.state_dir.join("acme")
}

/// Why an order failed. `Ca` carries the CA's own problem detail.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("the certificate authority refused: {0}")]
    Ca(String),
    #[error("validation failed: {0}")]
    Validation(String),
    #[error("{0}")]
    RateLimited(String),
    #[error("cannot reach the certificate authority at {directory}: {message}")]
    Unreachable { directory: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A certificate the CA issued.
pub struct Issued {
    pub chain_pem: String,
    /// A secret: never logged.
    pub key_pem: String,
    pub info: CertInfo,
}

/// Orders a certificate for `names` (each already known to reach this server) and
/// validates it over HTTP-01. `progress` gets one line per step (for `job.output`).
pub async fn order(
    settings: &AcmeSettings,
    root: &Path,
    names: &[String],
    progress: &(dyn Fn(String) + Sync),
) -> Result<Issued, AcmeError> {
    let ledger = ledger::Ledger::open(&dir(settings));
    ledger.admit(names, SystemTime::now()).map_err(AcmeError::RateLimited)?;
    let account = load_account(settings).await?;
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut new_order = NewOrder::new(&identifiers);
    if let Some(profile) = settings.profile.as_deref() {
        new_order = new_order.profile(profile);
    }
    ledger.record_order(SystemTime::now());
    let mut order = match account.new_order(&new_order).await {
        // The CA forgot the account (a test CA restarted, an account deactivated): a new one.
        Err(instant_acme::Error::Api(problem)) if problem.r#type.as_deref() == Some(ACCOUNT_GONE) => {
            tracing::warn!(directory = %settings.directory, "the CA does not know berth's ACME account; creating a new one");
            let stale = dir(settings).join(account_file(settings));
            std::fs::remove_file(&stale).map_err(|source| AcmeError::Io { path: stale, source })?;
            load_account(settings).await?.new_order(&new_order).await
        }
        other => other,
    }
    .map_err(|e| ca_error(&ledger, e))?;
    progress(format!("order placed for {}\n", names.join(", ")));

    let challenge_dir = under_root(root, CHALLENGE_DIR);
    ensure_dir(&challenge_dir, 0o755).map_err(|source| AcmeError::Io { path: challenge_dir.clone(), source })?;
    let mut written = Vec::new();
    let result = validate(&mut order, &challenge_dir, &mut written, progress).await;
    for file in &written {
        let _ = std::fs::remove_file(file);
    }
    if let Err(failures) = result {
        let failed: Vec<String> = failures.iter().map(|(name, _)| name.clone()).collect();
        ledger.record_failures(&failed, SystemTime::now());
        let detail: Vec<String> = failures.into_iter().map(|(name, why)| format!("{name}: {why}")).collect();
        return Err(AcmeError::Validation(detail.join("; ")));
    }

    let key = rcgen::KeyPair::generate().map_err(|e| AcmeError::Ca(format!("cannot make a key: {e}")))?;
    let csr = rcgen::CertificateParams::new(names.to_vec())
        .and_then(|params| params.serialize_request(&key))
        .map_err(|e| AcmeError::Ca(format!("cannot make the request: {e}")))?;
    order.finalize_csr(csr.der()).await.map_err(|e| ca_error(&ledger, e))?;
    let chain_pem = order.poll_certificate(&polling()).await.map_err(|e| ca_error(&ledger, e))?;
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| AcmeError::Ca("the CA sent no certificate".into()))?;
    let info = CertInfo::from_der(&leaf).map_err(AcmeError::Ca)?;
    progress(format!("certificate issued, valid until {}\n", crate::time::rfc3339(info.not_after)));
    Ok(Issued { chain_pem, key_pem: key.serialize_pem(), info })
}

/// Answers every pending HTTP-01 challenge and waits for the order; on failure,
/// each failed name with the CA's words.
async fn validate(
    order: &mut instant_acme::Order,
    challenge_dir: &Path,
    written: &mut Vec<PathBuf>,
    progress: &(dyn Fn(String) + Sync),
) -> Result<(), Vec<(String, String)>> {
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(|e| vec![("order".to_owned(), e.to_string())])?;
        let name = authz.identifier().to_string();
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(vec![(name, format!("authorization is {other:?}"))]),
        }
        let Some(mut challenge) = authz.challenge(ChallengeType::Http01) else {
            return Err(vec![(name, "the CA offers no HTTP-01 challenge".into())]);
        };
        let file = challenge_dir.join(&challenge.token);
        if challenge.token.is_empty() || challenge.token.contains(['/', '.']) {
            return Err(vec![(name, "the CA sent a malformed challenge token".into())]);
        }
        write_atomic(&file, challenge.key_authorization().as_str().as_bytes(), 0o644)
            .map_err(|e| vec![(name.clone(), format!("cannot write {}: {e}", file.display()))])?;
        written.push(file);
        challenge.set_ready().await.map_err(|e| vec![(name.clone(), e.to_string())])?;
        progress(format!("validating {name}\n"));
    }
    let status = order.poll_ready(&polling()).await.map_err(|e| vec![("order".to_owned(), e.to_string())])?;
    if status == OrderStatus::Ready {
        return Ok(());
    }
    // Which names failed, and the CA's words for each.
    let mut failures = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(authz)) = authorizations.next().await {
        if authz.status == AuthorizationStatus::Valid {
            continue;
        }
        let why = authz
            .challenges
            .iter()
            .filter_map(|c| c.error.as_ref())
            .map(|p| p.detail.clone().unwrap_or_else(|| p.to_string()))
            .next()
            .unwrap_or_else(|| format!("authorization is {:?}", authz.status));
        failures.push((authz.identifier().to_string(), why));
    }
    if failures.is_empty() {
        failures.push(("order".into(), format!("the order ended {status:?}")));
    }
    Err(failures)
}

/// The agent's existing account, to ask for renewal information; None when there
/// is none yet or the CA cannot be reached (the lifetime rule decides then).
pub async fn existing_account(settings: &AcmeSettings) -> Option<Account> {
    if !dir(settings).join(account_file(settings)).exists() {
        return None;
    }
    load_account(settings).await.ok()
}

/// When the CA wants this certificate renewed (ACME renewal information, RFC 9773):
/// the start of its suggested window. None when the CA offers no renewal information.
pub async fn suggested_renewal(account: &Account, chain_pem: &str) -> Option<SystemTime> {
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes()).next()?.ok()?;
    let id = instant_acme::CertificateIdentifier::try_from(&leaf).ok()?;
    match account.renewal_info(&id).await {
        Ok((info, _)) => Some(SystemTime::from(info.suggested_window.start)),
        Err(instant_acme::Error::Unsupported(_)) => None,
        Err(e) => {
            tracing::debug!(error = %e, "ACME renewal information not available");
            None
        }
    }
}

fn account_file(settings: &AcmeSettings) -> String {
    format!("account-{}.json", short_hash(&settings.directory))
}

/// The agent's account on this directory: loaded from the state dir, or created
/// (and its credentials stored, 0600) on first use.
async fn load_account(settings: &AcmeSettings) -> Result<Account, AcmeError> {
    // One creation at a time, so two first orders cannot make two accounts.
    static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = CREATING.lock().await;
    let unreachable = |e: instant_acme::Error| AcmeError::Unreachable {
        directory: settings.directory.clone(),
        message: e.to_string(),
    };
    let builder =
        || http::Http1::new(settings.ca_file.as_deref()).map(|client| Account::builder_with_http(Box::new(client)));
    let dir = dir(settings);
    let path = dir.join(account_file(settings));
    let io = |source| AcmeError::Io { path: path.clone(), source };
    if let Ok(bytes) = std::fs::read(&path) {
        let credentials: AccountCredentials = serde_json::from_slice(&bytes)
            .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())))?;
        return builder().map_err(unreachable)?.from_credentials(credentials).await.map_err(unreachable);
    }
    let contact = settings.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let new = NewAccount { contact: &contacts, terms_of_service_agreed: true, only_return_existing: false };
    let (account, credentials) =
        builder().map_err(unreachable)?.create(&new, settings.directory.clone(), None).await.map_err(|e| match e {
            instant_acme::Error::Api(problem) => AcmeError::Ca(problem.to_string()),
            other => unreachable(other),
        })?;
    ensure_dir(&dir, 0o700).map_err(io)?;
    let bytes = serde_json::to_vec(&credentials).map_err(|e| io(std::io::Error::other(e)))?;
    write_atomic(&path, &bytes, 0o600).map_err(io)?;
    tracing::info!(directory = %settings.directory, "ACME account created");
    Ok(account)
}

/// An error from the CA: a rate limit is remembered so no order goes out before it lifts.
fn ca_error(ledger: &ledger::Ledger, e: instant_acme::Error) -> AcmeError {
    match e {
        instant_acme::Error::Api(problem) => {
            if problem.r#type.as_deref() == Some("urn:ietf:params:acme:error:rateLimited") {
                ledger.pause_until(SystemTime::now() + ledger::RATE_LIMIT_PAUSE);
            }
            AcmeError::Ca(problem.to_string())
        }
        other => AcmeError::Ca(other.to_string()),
    }
}

fn short_hash(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}
