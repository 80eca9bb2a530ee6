//! The firewall's custom allow rules ([`Rule`]): kept in the inventory, parsed and
//! validated from `firewall.rules` here, so only typed values reach the template.
//! Reading a rule back from `inventory.json` runs the same checks.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::model::validate::{shown, FieldError, Params};

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
#[serde(try_from = "Stored")]
pub struct Rule {
    pub protocol: Protocol,
    /// `(first, last)`; `None` only for ICMP.
    pub ports: Option<(u16, u16)>,
    /// A network address and prefix length (a single address has the full length).
    pub source: Option<(IpAddr, u8)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A [`Rule`] as `inventory.json` holds it, before the checks of `firewall.rules`.
#[derive(Deserialize)]
struct Stored {
    protocol: Protocol,
    ports: Option<(u16, u16)>,
    source: Option<(IpAddr, u8)>,
    #[serde(default)]
    description: Option<String>,
}

impl TryFrom<Stored> for Rule {
    type Error = FieldError;

    /// The checks of [`parse_rule`] on typed values; errors name the param.
    fn try_from(stored: Stored) -> Result<Rule, FieldError> {
        let Stored { protocol, ports, source, description } = stored;
        ports_for(protocol, ports.is_some(), "port")?;
        if let Some((first, last)) = ports {
            let text = if first == last { first.to_string() } else { format!("{first}-{last}") };
            check_ports("port", &text, first, last)?;
        }
        if let Some((addr, len)) = source {
            check_network("source", &format!("{addr}/{len}"), addr, len)?;
        }
        if let Some(d) = &description {
            check_description("description", d)?;
        }
        Ok(Rule { protocol, ports, source, description })
    }
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
    let port = rule.opt_str("port")?;
    ports_for(protocol, port.is_some(), &rule.field("port"))?;
    let ports = port.map(|port| port_range(&rule.field("port"), port)).transpose()?;
    let source = rule.opt_str("source")?.map(|s| cidr(&rule.field("source"), s)).transpose()?;
    let description = rule.opt_str("description")?;
    if let Some(d) = description {
        check_description(&rule.field("description"), d)?;
    }
    Ok(Rule { protocol, ports, source, description: description.map(str::to_owned) })
}

/// ICMP has no ports; TCP and UDP need them.
fn ports_for(protocol: Protocol, has_ports: bool, field: &str) -> Result<(), FieldError> {
    match (protocol, has_ports) {
        (Protocol::Icmp, true) => Err(FieldError::new(field, "ICMP has no ports; leave it out")),
        (Protocol::Icmp, false) | (_, true) => Ok(()),
        (_, false) => Err(FieldError::new(field, "is required for TCP and UDP")),
    }
}

fn check_description(field: &str, d: &str) -> Result<(), FieldError> {
    if d.chars().count() > MAX_DESCRIPTION || d.chars().any(char::is_control) {
        return Err(FieldError::new(field, format!("at most {MAX_DESCRIPTION} characters, no control characters")));
    }
    Ok(())
}

fn bad_ports(field: &str, value: &str, why: &str) -> FieldError {
    FieldError::new(field, format!("must be a port 1-65535 or a range like \"8000-8100\"{why}: {}", shown(value)))
}

/// Ports 1–65535, the first not above the last; `value` is how they were written.
fn check_ports(field: &str, value: &str, first: u16, last: u16) -> Result<(), FieldError> {
    if first == 0 || last == 0 {
        return Err(bad_ports(field, value, ""));
    }
    if first > last {
        return Err(bad_ports(field, value, " (the first port comes first)"));
    }
    Ok(())
}

/// `"80"` or `"8000-8100"`: ports 1–65535, the first not above the last.
fn port_range(field: &str, value: &str) -> Result<(u16, u16), FieldError> {
    let port = |p: &str| -> Result<u16, FieldError> {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad_ports(field, value, ""));
        }
        p.parse::<u16>().map_err(|_| bad_ports(field, value, ""))
    };
    let (first, last) = match value.split_once('-') {
        Some((first, last)) => (port(first)?, port(last)?),
        None => (port(value)?, port(value)?),
    };
    check_ports(field, value, first, last)?;
    Ok((first, last))
}

/// An IPv4 or IPv6 address, or a network in CIDR notation; host bits must be zero.
fn cidr(field: &str, value: &str) -> Result<(IpAddr, u8), FieldError> {
    let bad = || bad_network(field, value);
    let (addr, len) = match value.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (value, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let len = match len {
        None => max_prefix(addr),
        Some(len) if !len.is_empty() && len.len() <= 3 && len.bytes().all(|b| b.is_ascii_digit()) => {
            len.parse::<u8>().map_err(|_| bad())?
        }
        Some(_) => return Err(bad()),
    };
    check_network(field, value, addr, len)?;
    Ok((addr, len))
}

fn bad_network(field: &str, value: &str) -> FieldError {
    FieldError::new(field, format!("must be an IP address or a network like 192.0.2.0/24: {}", shown(value)))
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// A prefix length the address has room for, and no host bits set; `value` is how
/// the network was written.
fn check_network(field: &str, value: &str, addr: IpAddr, len: u8) -> Result<(), FieldError> {
    if len > max_prefix(addr) {
        return Err(bad_network(field, value));
    }
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `firewall.rules` params and the same rule as `inventory.json` holds it: both
    /// are refused, with one message.
    #[test]
    fn a_stored_rule_passes_the_checks_of_its_params() {
        let cases = [
            (json!({"protocol": "TCP", "port": "0"}), json!({"protocol": "TCP", "ports": [0, 0]})),
            (json!({"protocol": "TCP", "port": "8100-8000"}), json!({"protocol": "TCP", "ports": [8100, 8000]})),
            (json!({"protocol": "UDP"}), json!({"protocol": "UDP", "ports": null})),
            (json!({"protocol": "ICMP", "port": "7"}), json!({"protocol": "ICMP", "ports": [7, 7]})),
            (
                json!({"protocol": "ICMP", "source": "192.0.2.1/24"}),
                json!({"protocol": "ICMP", "source": ["192.0.2.1", 24]}),
            ),
            (
                json!({"protocol": "ICMP", "source": "2001:db8::/129"}),
                json!({"protocol": "ICMP", "source": ["2001:db8::", 129]}),
            ),
            (
                json!({"protocol": "ICMP", "description": "two\nlines"}),
                json!({"protocol": "ICMP", "description": "two\nlines"}),
            ),
        ];
        for (params, stored) in cases {
            let expected = parse_rule(&Params::new(&params).unwrap()).unwrap_err().to_string();
            let err = serde_json::from_value::<Rule>(stored.clone()).unwrap_err().to_string();
            assert_eq!(err, expected, "{stored}");
        }
        let good = json!({"protocol": "TCP/UDP", "port": "8000-8100", "source": "2001:db8::/32"});
        let rule = parse_rule(&Params::new(&good).unwrap()).unwrap();
        let stored = serde_json::to_value(&rule).unwrap();
        assert_eq!(stored, json!({"protocol": "TCP/UDP", "ports": [8000, 8100], "source": ["2001:db8::", 32]}));
        assert_eq!(serde_json::from_value::<Rule>(stored).unwrap(), rule);
    }
}
