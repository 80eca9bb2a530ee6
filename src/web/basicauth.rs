//! Basic auth's password files: one per app, `/etc/berth/htpasswd/APP`, rendered
//! from the inventory like every other config (the inventory keeps the user name
//! and the password's SHA-512 crypt hash, never the password).
//!
//! nginx's workers read the file at each request, as the web server's user: the
//! directory is `root:www-data` 0750, so the web server and root read it and no
//! hosted user does (users are not in that group; the web server is in theirs).
//! The hash keeps the whole password: DES crypt, htpasswd's old default, keeps 8
//! characters, and a password sharing them would pass.

use std::path::Path;

use crate::host::fs::under_root;
use crate::host::services::Service;
use crate::host::transaction::FileChange;
use crate::host::tree::Dir;
use crate::job::JobError;
use crate::model::site::BasicAuth;
use crate::model::{PasswordHash, Secret};

/// The password files' directory (`root:www-data` 0750).
pub const DIR: &str = "/etc/berth/htpasswd";

/// App `app`'s password file.
pub fn file(app: &str) -> String {
    format!("{DIR}/{app}")
}

/// The app's password file: written (`Some`) or removed.
pub fn change(root: &Path, app: &str, auth: Option<&BasicAuth>) -> FileChange {
    let path = under_root(root, &file(app));
    match auth {
        Some(auth) => {
            FileChange::write(path, format!("{}:{}\n", auth.username, auth.password_hash), 0o644, Service::Nginx)
        }
        None => FileChange::remove(path, Service::Nginx),
    }
}

/// Makes [`DIR`] exist, `root:WEB_USER` 0750 (before the password files are written
/// in it). True when anything changed. A host without the web server's user gets
/// a root-only directory: there is no web server to read it.
pub fn ensure_dir(root: &Path, web_user: &str) -> Result<bool, JobError> {
    let gid = crate::web::accounts::passwd_entry(root, web_user)?.map_or(0, |a| a.gid);
    let (_, changed) = Dir::ensure_trusted(&under_root(root, DIR), 0o750, 0, gid)?;
    Ok(changed)
}

/// `password`'s SHA-512 crypt hash, with a fresh salt.
pub fn hash(password: &Secret) -> Result<PasswordHash, JobError> {
    let params = sha_crypt::Sha512Params::new(sha_crypt::ROUNDS_DEFAULT).expect("default rounds are valid");
    let hash = sha_crypt::sha512_simple(password.expose(), &params)
        .map_err(|_| JobError::Internal("cannot hash the basic auth password".into()))?;
    PasswordHash::try_from(hash).map_err(|e| JobError::Internal(format!("basic auth hash: {}", e.message)))
}

/// Whether `password` is the one `hash` was made from.
pub fn matches(password: &Secret, hash: &PasswordHash) -> bool {
    sha_crypt::sha512_check(password.expose(), hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_keeps_the_whole_password() {
        let hash = hash(&Secret::new("correct horse battery")).unwrap();
        assert!(hash.starts_with("$6$"));
        assert!(matches(&Secret::new("correct horse battery"), &hash));
        assert!(!matches(&Secret::new("correct horse staple"), &hash), "same first 8 characters");
        assert!(!matches(&Secret::new("correct "), &hash));
    }

    #[test]
    fn the_file_is_one_htpasswd_line_and_goes_with_the_app() {
        let root = Path::new("/r");
        let auth = BasicAuth {
            username: "ann".try_into().unwrap(),
            password_hash: hash(&Secret::new("pw-12345678")).unwrap(),
        };
        let written = change(root, "shop", Some(&auth));
        assert_eq!(written.path, Path::new("/r/etc/berth/htpasswd/shop"));
        let line = String::from_utf8(written.content.unwrap()).unwrap();
        assert!(line.starts_with("ann:$6$") && line.ends_with('\n') && line.lines().count() == 1, "{line}");
        assert_eq!(change(root, "shop", None).content, None);
    }
}
