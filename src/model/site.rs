//! The site options of an app (SpinupWP's site object): where its web root is,
//! which names only redirect to it, which WordPress doors are shut, and who may
//! pass its basic auth. Each value is a checked type whose rule is
//! [`super::siterules`]'s, so the templates and the paths built from them only ever
//! see what those rules let through. Plain data, no I/O.

use serde::{Deserialize, Serialize};

use super::names::{AuthUser, PasswordHash, PublicFolder};

/// SpinupWP's `nginx` object: WordPress doors shut in front of PHP.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protections {
    /// No PHP runs under `wp-content/uploads` (direct, by path info, or by a rewrite).
    #[serde(default)]
    pub uploads_directory_protected: bool,
    /// `xmlrpc.php` answers 403.
    #[serde(default)]
    pub xmlrpc_protected: bool,
}

impl Protections {
    pub fn is_off(&self) -> bool {
        *self == Protections::default()
    }
}

/// Basic auth in front of the whole app (ACME challenges excepted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicAuth {
    pub username: AuthUser,
    pub password_hash: PasswordHash,
}

/// The public folder an app without one has.
pub const DEFAULT_PUBLIC_FOLDER: &str = "public";

/// The app's public folder, or the default.
pub fn public_folder_or_default(folder: Option<&PublicFolder>) -> &str {
    folder.map_or(DEFAULT_PUBLIC_FOLDER, |f| f.as_str())
}
