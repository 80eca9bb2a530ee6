//! The field rules of an app's site options ([`super::site`]): a public folder
//! becomes part of nginx's `root`, Apache's `DocumentRoot` and a directory walk
//! under the user's home; a basic auth user name and hash become a line of an
//! htpasswd file. So each is strict. The checked types of [`super::names`] run them.

use super::validate::{shown, FieldError};

type Result<T> = std::result::Result<T, FieldError>;

/// The most components a public folder may have (`public/web/wp` is three).
pub const PUBLIC_FOLDER_DEPTH: usize = 8;
/// The longest public folder, in bytes.
pub const PUBLIC_FOLDER_MAX: usize = 200;

/// The app's web root, relative to its directory (`/srv/users/USER/apps/APP`):
/// 1–8 components of `[A-Za-z0-9._-]`, each at most 64 bytes, none `.` or `..` or
/// starting with `.` (dotfiles are never served), no leading or trailing `/`, no
/// empty component. `public` is the default.
pub fn public_folder(field: &str, v: &str) -> Result<()> {
    let fail = |message: String| Err(FieldError::new(field, message));
    if v.is_empty() {
        return fail("public folder must not be empty (leave it out for the default, \"public\")".into());
    }
    if v.len() > PUBLIC_FOLDER_MAX {
        return fail(format!("public folder must be at most {PUBLIC_FOLDER_MAX} bytes long (got {})", v.len()));
    }
    if v.starts_with('/') {
        return fail(format!("public folder must be relative to the app's directory, not {}", shown(v)));
    }
    let parts: Vec<&str> = v.split('/').collect();
    if parts.len() > PUBLIC_FOLDER_DEPTH {
        return fail(format!("public folder may have at most {PUBLIC_FOLDER_DEPTH} components: {}", shown(v)));
    }
    for part in parts {
        if part.is_empty() {
            return fail(format!(
                "public folder must not have an empty component ('//' or a trailing '/'): {}",
                shown(v)
            ));
        }
        if part.starts_with('.') {
            return fail(format!("public folder components must not start with '.' ('..' included): {}", shown(v)));
        }
        if part.len() > 64 {
            return fail(format!("public folder components must be at most 64 bytes long: {}", shown(v)));
        }
        if let Some(bad) = part.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
            return fail(format!(
                "public folder may only contain letters, digits, '.', '_', '-' and '/'; found {} in {}",
                shown(&bad.to_string()),
                shown(v)
            ));
        }
    }
    Ok(())
}

/// A basic auth user name: 1–64 of `[A-Za-z0-9._@-]` (no ':', which ends the name
/// in an htpasswd line, no whitespace or control characters).
pub fn auth_user(field: &str, v: &str) -> Result<()> {
    let fail = |message: String| Err(FieldError::new(field, message));
    if v.is_empty() || v.len() > 64 {
        return fail(format!("user name must be 1 to 64 characters long (got {})", v.len()));
    }
    if let Some(bad) = v.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'))) {
        return fail(format!(
            "user name may only contain letters, digits, '.', '_', '@' and '-'; found {} in {}",
            shown(&bad.to_string()),
            shown(v)
        ));
    }
    Ok(())
}

/// A SHA-512 crypt hash (`$6$[rounds=N$]salt$hash`), the only kind berth writes:
/// it keeps the whole password (DES crypt keeps 8 characters). Checked when the
/// inventory loads, since it becomes a line of a file the web server reads.
pub fn password_hash(field: &str, v: &str) -> Result<()> {
    let ok = v.starts_with("$6$")
        && v.len() <= 200
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'$' | b'.' | b'/' | b'='));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(field, "not a SHA-512 crypt hash ($6$...)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_folders_stay_below_the_app_directory() {
        for good in ["public", "public/web", "current/public", "web-root_2", "a/b/c/d/e/f/g/h", "v1.2"] {
            assert!(public_folder("public_folder", good).is_ok(), "{good}");
        }
        let long = "a".repeat(65);
        let deep = "a/".repeat(8) + "a";
        for bad in [
            "",
            "/public",
            "../other",
            "public/..",
            "public/../../x",
            ".",
            "./public",
            "public/",
            "public//web",
            ".git",
            "public/.well-known",
            "pub lic",
            "pub\nlic",
            "pub\0lic",
            "püblic",
            "public\\..",
            "public;x",
            "$HOME",
            "~/x",
            long.as_str(),
            deep.as_str(),
        ] {
            let e = public_folder("public_folder", bad).unwrap_err();
            assert_eq!(e.field, "public_folder", "{bad}");
        }
    }

    #[test]
    fn auth_user_names_cannot_break_an_htpasswd_line() {
        assert!(auth_user("username", "admin@example.test").is_ok());
        for bad in ["", "a:b", "a b", "a\nb", "a\0", "ümlaut", &"x".repeat(65), "a#b", "a\tb"] {
            assert!(auth_user("username", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_sha512_crypt_hashes_load() {
        assert!(password_hash("h", "$6$rounds=5000$salt$abc./def").is_ok());
        for bad in ["abcdefgh", "$1$salt$x", "$6$salt$x\nroot::0:0", "$6$a:b", "$2b$10$x"] {
            assert!(password_hash("h", bad).is_err(), "{bad:?}");
        }
    }
}
