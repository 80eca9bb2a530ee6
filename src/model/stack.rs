//! [`Stack`]: how an app is served (kept in the inventory).

use serde::{Deserialize, Serialize};

/// How an app is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stack {
    /// nginx in front, Apache behind it for `.htaccess`, PHP-FPM for PHP.
    NginxApache,
    /// nginx straight to PHP-FPM.
    Nginx,
}

impl Stack {
    pub fn parse(value: &str) -> Option<Stack> {
        match value {
            "nginx-apache" => Some(Stack::NginxApache),
            "nginx" => Some(Stack::Nginx),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stack::NginxApache => "nginx-apache",
            Stack::Nginx => "nginx",
        }
    }
}
