//! The site options `app.create` and `app.update` take besides domains and runtime
//! (SpinupWP's site object): `redirect_domains`, `public_folder`, and the `nginx`
//! protections `uploads_directory_protected` and `xmlrpc_protected`.
//!
//! Each is optional; an update changes only what it names. Parsing checks every
//! rule that needs no host (the field is named); [`SiteOptions::apply_to`] then
//! checks the rules that need the app's own domains.

use crate::job::JobError;
use crate::model::site::Protections;
use crate::model::validate::{shown, FieldError, Params};
use crate::model::{Domain, PublicFolder};
use crate::state::inventory::App;
use crate::web::stack;

/// At most this many redirect domains per app.
pub const MAX_REDIRECT_DOMAINS: usize = 100;

/// The options a create or an update names (`None`: left as they are).
#[derive(Debug, Default)]
pub struct SiteOptions {
    pub redirect_domains: Option<Vec<Domain>>,
    pub public_folder: Option<PublicFolder>,
    pub uploads_directory_protected: Option<bool>,
    pub xmlrpc_protected: Option<bool>,
}

impl SiteOptions {
    pub fn parse(params: &Params) -> Result<SiteOptions, JobError> {
        let redirect_domains = params.opt_str_array("redirect_domains")?.map(|d| redirects(params, d)).transpose()?;
        let public_folder = PublicFolder::opt_param(params, "public_folder")?;
        let mut uploads_directory_protected = params.opt_bool("uploads_directory_protected")?;
        let mut xmlrpc_protected = params.opt_bool("xmlrpc_protected")?;
        // SpinupWP's own shape, `nginx: {uploads_directory_protected, xmlrpc_protected}`.
        if let Some(nginx) = params.opt_object("nginx")? {
            uploads_directory_protected =
                nginx.opt_bool("uploads_directory_protected")?.or(uploads_directory_protected);
            xmlrpc_protected = nginx.opt_bool("xmlrpc_protected")?.or(xmlrpc_protected);
        }
        Ok(SiteOptions { redirect_domains, public_folder, uploads_directory_protected, xmlrpc_protected })
    }

    /// `app` with these options; a redirect domain that is one of the app's own
    /// names, or an app with only wildcard domains to redirect to, is refused.
    pub fn apply_to(self, app: &mut App) -> Result<(), JobError> {
        if let Some(redirects) = self.redirect_domains {
            app.redirect_domains = redirects;
        }
        if let Some(folder) = self.public_folder {
            app.public_folder = (folder.as_str() != crate::model::site::DEFAULT_PUBLIC_FOLDER).then_some(folder);
        }
        let protections = Protections {
            uploads_directory_protected: self
                .uploads_directory_protected
                .unwrap_or(app.nginx.uploads_directory_protected),
            xmlrpc_protected: self.xmlrpc_protected.unwrap_or(app.nginx.xmlrpc_protected),
        };
        app.nginx = protections;
        check_redirects(app)
    }
}

/// The redirect domains as listed: each a domain, not a wildcard, no two the same.
fn redirects(params: &Params, values: Vec<&str>) -> Result<Vec<Domain>, JobError> {
    let field = params.field("redirect_domains");
    if values.len() > MAX_REDIRECT_DOMAINS {
        return Err(JobError::LimitExceeded {
            field,
            message: format!("at most {MAX_REDIRECT_DOMAINS} redirect domains per app are allowed"),
        });
    }
    let mut domains: Vec<Domain> = Vec::with_capacity(values.len());
    for (i, value) in values.into_iter().enumerate() {
        let field = format!("{field}[{i}]");
        let domain = Domain::parse(&field, value)?;
        if value.starts_with("*.") {
            return Err(
                FieldError::new(field, format!("a redirect domain cannot be a wildcard: {}", shown(value))).into()
            );
        }
        if domains.iter().any(|d| d == value) {
            return Err(FieldError::new(field, format!("duplicate redirect domain {}", shown(value))).into());
        }
        domains.push(domain);
    }
    Ok(domains)
}

/// A redirect domain must not be one the app serves, and needs a name to go to.
fn check_redirects(app: &App) -> Result<(), JobError> {
    if app.redirect_domains.is_empty() {
        return Ok(());
    }
    let served = stack::server_names(&app.domains);
    for (i, redirect) in app.redirect_domains.iter().enumerate() {
        if served.iter().any(|s| s == redirect.as_str()) {
            return Err(FieldError::new(
                format!("redirect_domains[{i}]"),
                format!("{} is served by the app itself (one of its domains or their www. twins)", shown(redirect)),
            )
            .into());
        }
    }
    if stack::redirect_target(&app.domains).is_none() {
        return Err(FieldError::new(
            "redirect_domains",
            "the app has only wildcard domains: a redirect needs a plain domain to go to",
        )
        .into());
    }
    Ok(())
}
