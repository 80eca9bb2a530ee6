//! Checked newtypes (Bottlerocket's `modeled-types` style): a value of one of these
//! types has passed its field rule of [`crate::model::validate`], whether it came from a
//! job's params ([`AppName::parse`] names the field, so messages are exactly those
//! of the rule) or from serde (`Deserialize` runs the same rule).
//!
//! [`super::Inventory`] holds them, and so do the jobs' parsed params ([`AppName::param`]
//! reads one, so an unchecked string reaches no template and no path). An
//! `inventory.json` holding a value today's rules refuse fails to load, naming the
//! file, the field and the rule (see [`super::inventory`]).

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize};

use crate::model::validate::{self, FieldError, Params};

macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $rule:path, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The field name of [`TryFrom`] and `Deserialize` errors.
            pub const FIELD: &'static str = $field;

            /// `value`, checked by its rule; an error names `field`.
            pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
                $rule(field, value)?;
                Ok($name(value.to_owned()))
            }

            /// The required string param `key`, checked by its rule; errors name the
            /// field exactly as [`Params::checked`] does.
            pub fn param(params: &Params, key: &str) -> Result<Self, FieldError> {
                $name::parse(&params.field(key), params.str(key)?)
            }

            /// [`Self::param`] for an optional param (null counts as absent).
            pub fn opt_param(params: &Params, key: &str) -> Result<Option<Self>, FieldError> {
                params.opt_str(key)?.map(|value| $name::parse(&params.field(key), value)).transpose()
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $name {
            type Error = FieldError;
            fn try_from(value: &str) -> Result<Self, FieldError> {
                $name::parse($field, value)
            }
        }

        impl TryFrom<String> for $name {
            type Error = FieldError;
            fn try_from(value: String) -> Result<Self, FieldError> {
                $rule($field, &value)?;
                Ok($name(value))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $name::try_from(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl From<&$name> for String {
            fn from(value: &$name) -> String {
                value.0.clone()
            }
        }
    };
}

checked_string!(
    /// An app's name: [`validate::app_name`].
    AppName,
    validate::app_name,
    "name"
);
checked_string!(
    /// A system user's name: [`validate::sysuser_name`].
    SysuserName,
    validate::sysuser_name,
    "sysuser"
);
checked_string!(
    /// A site domain: [`validate::domain`].
    Domain,
    validate::domain,
    "domain"
);
checked_string!(
    /// A PHP runtime, `phpX.Y`: [`validate::runtime`].
    Runtime,
    validate::runtime,
    "runtime"
);

checked_string!(
    /// A database's name: [`validate::db_name`].
    DbName,
    validate::db_name,
    "name"
);
checked_string!(
    /// A database user's name: [`validate::db_user_name`].
    DbUserName,
    validate::db_user_name,
    "user"
);
checked_string!(
    /// A job's id, the idempotency key: [`validate::job_id`].
    JobId,
    validate::job_id,
    "job_id"
);
checked_string!(
    /// A name the web servers answer for an app: one of its domains, or the `www.`
    /// twin of one ([`validate::server_name`]), as in an AutoSSL certificate's order.
    ServerName,
    validate::server_name,
    "ordered_for"
);

checked_string!(
    /// An app's web root below its directory: [`crate::model::siterules::public_folder`].
    PublicFolder,
    crate::model::siterules::public_folder,
    "public_folder"
);
checked_string!(
    /// A basic auth user name: [`crate::model::siterules::auth_user`].
    AuthUser,
    crate::model::siterules::auth_user,
    "username"
);
checked_string!(
    /// A basic auth password's SHA-512 crypt hash: [`crate::model::siterules::password_hash`].
    PasswordHash,
    crate::model::siterules::password_hash,
    "password_hash"
);
checked_string!(
    /// A WordPress table prefix: [`validate::table_prefix`].
    TablePrefix,
    validate::table_prefix,
    "table_prefix"
);
checked_string!(
    /// A WordPress site title: [`validate::site_title`].
    SiteTitle,
    validate::site_title,
    "site_title"
);
checked_string!(
    /// A WordPress admin's login: [`validate::wp_user`].
    WpUser,
    validate::wp_user,
    "admin_user"
);
checked_string!(
    /// An email address: [`validate::email`].
    Email,
    validate::email,
    "admin_email"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_type_runs_its_rule_with_the_rules_own_message() {
        type Check = fn(&str, &str) -> Result<(), FieldError>;
        let cases: [(&str, Check, Check); 12] = [
            ("Ab", validate::app_name, |f, v| AppName::parse(f, v).map(drop)),
            ("3po", validate::sysuser_name, |f, v| SysuserName::parse(f, v).map(drop)),
            ("example", validate::domain, |f, v| Domain::parse(f, v).map(drop)),
            ("php8", validate::runtime, |f, v| Runtime::parse(f, v).map(drop)),
            ("wp_db", validate::db_name, |f, v| DbName::parse(f, v).map(drop)),
            ("1user", validate::db_user_name, |f, v| DbUserName::parse(f, v).map(drop)),
            ("job id", validate::job_id, |f, v| JobId::parse(f, v).map(drop)),
            ("www.*.a.test", validate::server_name, |f, v| ServerName::parse(f, v).map(drop)),
            ("wp;_", validate::table_prefix, |f, v| TablePrefix::parse(f, v).map(drop)),
            ("", validate::site_title, |f, v| SiteTitle::parse(f, v).map(drop)),
            ("a b", validate::wp_user, |f, v| WpUser::parse(f, v).map(drop)),
            ("a@b", validate::email, |f, v| Email::parse(f, v).map(drop)),
        ];
        for (bad, rule, parse) in cases {
            let expected = rule("params.x", bad).unwrap_err();
            assert_eq!(parse("params.x", bad).unwrap_err(), expected, "{bad}");
        }
        assert_eq!(AppName::try_from("Ab").unwrap_err(), validate::app_name("name", "Ab").unwrap_err());
        assert_eq!(SysuserName::try_from("3po").unwrap_err().field, "sysuser");
    }

    #[test]
    fn good_values_pass_and_serialize_as_plain_strings() {
        let app = AppName::try_from("blog").unwrap();
        assert_eq!((app.as_str(), &*app), ("blog", "blog"));
        assert!(app == "blog");
        assert_eq!(serde_json::to_string(&app).unwrap(), "\"blog\"");
        assert_eq!(serde_json::from_str::<SysuserName>("\"derek\"").unwrap(), "derek");
        assert_eq!(serde_json::from_str::<Domain>("\"example.com\"").unwrap().to_string(), "example.com");
        assert_eq!(String::from(Runtime::try_from("php8.3").unwrap()), "php8.3");
    }

    #[test]
    fn deserialization_refuses_what_the_rule_refuses() {
        let err = serde_json::from_str::<AppName>("\"Blog\"").unwrap_err().to_string();
        assert!(err.starts_with(&validate::app_name("name", "Blog").unwrap_err().to_string()), "{err}");
        assert!(serde_json::from_str::<Runtime>("\"python3\"").is_err());
        assert!(serde_json::from_str::<Domain>("\"1.2.3.4\"").is_err());
    }

    #[test]
    fn params_give_the_type_naming_the_field_as_checked_does() {
        let value = serde_json::json!({"name": "Blog", "user": {"name": "wp"}, "runtime": null, "n": 3});
        let params = Params::new(&value).unwrap();
        assert_eq!(
            AppName::param(&params, "name").unwrap_err(),
            params.checked("name", validate::app_name).unwrap_err()
        );
        let user = params.object("user").unwrap();
        assert_eq!(DbUserName::param(&user, "name").unwrap(), "wp");
        assert_eq!(DbUserName::param(&user, "password").unwrap_err().to_string(), "user.password: is required");
        assert_eq!(Runtime::opt_param(&params, "runtime").unwrap(), None);
        assert_eq!(Runtime::opt_param(&params, "absent").unwrap(), None);
        assert_eq!(
            AppName::opt_param(&params, "n").unwrap_err(),
            params.opt_checked("n", validate::app_name).unwrap_err()
        );
    }

    #[test]
    fn a_server_name_is_a_domain_or_the_www_twin_of_one() {
        let label63 = "a".repeat(63);
        let longest = format!("{label63}.{label63}.{label63}.{}", "b".repeat(61));
        for good in
            ["example.com", "www.example.com", "*.example.com", "www.www.example.com", &format!("www.{longest}")]
        {
            ServerName::try_from(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        assert!(Domain::try_from(format!("www.{longest}")).is_err(), "a twin may be longer than a domain");
        for bad in ["www.*.example.com", "www.1.2.3.4", "www.", "Www.example.com", &format!("www.a{longest}")] {
            let err = ServerName::try_from(bad).unwrap_err();
            assert_eq!(err, validate::domain("ordered_for", bad).unwrap_err(), "{bad}");
        }
    }
}
