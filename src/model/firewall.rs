//! The firewall's custom allow rules ([`Rule`]): kept in the inventory, parsed and
//! validated from `firewall.rules` here, so only typed values reach the template.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::validate::{shown, FieldError, Params};

const MAX_DESCRIPTION: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "TCP/UDP")]
    TcpUdp,
    #[serde(rename = "ICMP")]
    Icmp,
}

/// One custom allow rule, as validated (and kept in the inventory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub protocol: Protocol,
    /// `(first, last)`; `None` only for ICMP.
    pub ports: Option<(u16, u16)>,
    /// A network address and prefix length (a single address has the full length).
    pub source: Option<(IpAddr, u8)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Rule {
    /// The nft match of this rule (what precedes `accept`).
    pub fn nft_match(&self) -> String {
        let source = self.source.map(|(addr, len)| {
            let family = if addr.is_ipv4() { "ip" } else { "ip6" };
            format!("{family} saddr {addr}/{len} ")
        });
        let ports =
            self.ports.map(|(first, last)| if first == last { first.to_string() } else { format!("{first}-{last}") });
        let matched = match (self.protocol, ports) {
            (Protocol::Icmp, _) => match self.source {
                Some((IpAddr::V4(_), _)) => "meta l4proto icmp".to_owned(),
                Some((IpAddr::V6(_), _)) => "meta l4proto ipv6-icmp".to_owned(),
                None => "meta l4proto { icmp, ipv6-icmp }".to_owned(),
            },
            (Protocol::Tcp, Some(p)) => format!("tcp dport {p}"),
            (Protocol::Udp, Some(p)) => format!("udp dport {p}"),
            (Protocol::TcpUdp, Some(p)) => format!("meta l4proto {{ tcp, udp }} th dport {p}"),
            // Parsing never makes a port rule without ports; match nothing rather than everything.
            (_, None) => "meta l4proto { }".to_owned(),
        };
        format!("{}{matched}", source.unwrap_or_default())
    }
}

/// One rule of `firewall.rules`, every field checked.
pub fn parse_rule(rule: &Params) -> Result<Rule, FieldError> {
    let protocol = match rule.str("protocol")? {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        "TCP/UDP" => Protocol::TcpUdp,
        "ICMP" => Protocol::Icmp,
        other => {
            return Err(FieldError::new(
                rule.field("protocol"),
                format!("must be TCP, UDP, TCP/UDP or ICMP, not {}", shown(other)),
            ))
        }
    };
    let ports = match (protocol, rule.opt_str("port")?) {
        (Protocol::Icmp, Some(_)) => {
            return Err(FieldError::new(rule.field("port"), "ICMP has no ports; leave it out"))
        }
        (Protocol::Icmp, None) => None,
        (_, None) => return Err(FieldError::new(rule.field("port"), "is required for TCP and UDP")),
        (_, Some(port)) => Some(port_range(&rule.field("port"), port)?),
    };
    let source = rule.opt_str("source")?.map(|s| cidr(&rule.field("source"), s)).transpose()?;
    let description = rule.opt_str("description")?;
    if let Some(d) = description {
        if d.chars().count() > MAX_DESCRIPTION || d.chars().any(char::is_control) {
            return Err(FieldError::new(
                rule.field("description"),
                format!("at most {MAX_DESCRIPTION} characters, no control characters"),
            ));
        }
    }
    Ok(Rule { protocol, ports, source, description: description.map(str::to_owned) })
}

/// `"80"` or `"8000-8100"`: ports 1–65535, the first not above the last.
fn port_range(field: &str, value: &str) -> Result<(u16, u16), FieldError> {
    let bad = |why: &str| {
        FieldError::new(field, format!("must be a port 1-65535 or a range like \"8000-8100\"{why}: {}", shown(value)))
    };
    let port = |p: &str| -> Result<u16, FieldError> {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(""));
        }
        p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad(""))
    };
    let (first, last) = match value.split_once('-') {
        Some((first, last)) => (port(first)?, port(last)?),
        None => (port(value)?, port(value)?),
    };
    if first > last {
        return Err(bad(" (the first port comes first)"));
    }
    Ok((first, last))
}

/// An IPv4 or IPv6 address, or a network in CIDR notation; host bits must be zero.
fn cidr(field: &str, value: &str) -> Result<(IpAddr, u8), FieldError> {
    let bad =
        || FieldError::new(field, format!("must be an IP address or a network like 192.0.2.0/24: {}", shown(value)));
    let (addr, len) = match value.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (value, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(len) if !len.is_empty() && len.len() <= 3 && len.bytes().all(|b| b.is_ascii_digit()) => {
            len.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(bad)?
        }
        Some(_) => return Err(bad()),
    };
    let host_bits = match addr {
        IpAddr::V4(a) => u32::from(a).checked_shl(u32::from(len)).unwrap_or(0) != 0,
        IpAddr::V6(a) => u128::from(a).checked_shl(u32::from(len)).unwrap_or(0) != 0,
    };
    if host_bits {
        return Err(FieldError::new(
            field,
            format!("has host bits set; the network is written with zeros there: {}", shown(value)),
        ));
    }
    Ok((addr, len))
}
