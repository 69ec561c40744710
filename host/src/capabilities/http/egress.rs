//! The SSRF guard: which addresses a runbook's HTTP requests may reach.
//!
//! Loopback, private, link-local (cloud metadata at 169.254.169.254), CGNAT, documentation,
//! multicast and reserved addresses are refused unless the policy's `[http] networks` names
//! them. IPv4 addresses hidden in IPv6 (mapped `::ffff:a.b.c.d`, compatible, NAT64
//! `64:ff9b::/96`, 6to4) are unwrapped first. Names are resolved once, by the host; every
//! address must pass, and the connection goes only to those addresses (no second lookup, so
//! no DNS rebinding). IP-literal hosts never reach a resolver, so they are checked before
//! the request is made.

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// The address a connection would really reach, with IPv4 unwrapped from IPv6 forms.
pub fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    let segments = v6.segments();
    let embedded = || Ipv4Addr::from(v6.to_bits() as u32);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    // NAT64 well-known prefix 64:ff9b::/96 and IPv4-compatible ::a.b.c.d.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (segments[..6] == [0; 6] && segments[6] != 0)
    {
        return IpAddr::V4(embedded());
    }
    // 6to4 2002:AABB:CCDD::/48 carries a.b.c.d in the second and third segments.
    if segments[0] == 0x2002 {
        let [a, b] = segments[1].to_be_bytes();
        let [c, d] = segments[2].to_be_bytes();
        return IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    }
    ip
}

/// The kind of non-public address `ip` is, or `None` for a globally routable one.
pub fn non_public_kind(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => v6_kind(v6),
    }
}

fn in_net(ip: IpAddr, net: &str) -> bool {
    net.parse::<IpNet>().is_ok_and(|n| n.contains(&ip))
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[(&str, &str)] = &[
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    ];
    let ip = IpAddr::V4(ip);
    RANGES
        .iter()
        .find(|(net, _)| in_net(ip, net))
        .map(|(_, kind)| *kind)
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    const RANGES: &[(&str, &str)] = &[
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "local NAT64"),
        ("100::/64", "discard"),
        ("2001::/32", "Teredo"),
        ("2001:db8::/32", "documentation"),
        ("fc00::/7", "unique local (private)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    ];
    let ip = IpAddr::V6(ip);
    RANGES
        .iter()
        .find(|(net, _)| in_net(ip, net))
        .map(|(_, kind)| *kind)
}

/// Whether a runbook whose policy names `networks` may connect to `ip`.
pub fn check_address(ip: IpAddr, networks: &[IpNet]) -> Result<(), String> {
    let real = canonical(ip);
    if networks
        .iter()
        .any(|net| net.contains(&real) || net.contains(&ip))
    {
        return Ok(());
    }
    match non_public_kind(ip) {
        None => Ok(()),
        Some(kind) => Err(format!(
            "{ip} is a {kind} address; name it in [http] networks to allow it"
        )),
    }
}

/// An address refused by the guard, carried through reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EgressDenied(pub String);

/// A resolver that resolves once and hands reqwest only the addresses the policy allows.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    networks: Arc<Vec<IpNet>>,
}

impl GuardedResolver {
    /// A resolver for a runbook whose policy names `networks`.
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self {
            networks: Arc::new(networks),
        }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let networks = Arc::clone(&self.networks);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(Box::new(EgressDenied(format!("{host} has no addresses")))
                    as Box<dyn StdError + Send + Sync>);
            }
            // One bad address refuses the whole name: a mixed answer is how rebinding starts.
            for addr in &addrs {
                check_address(addr.ip(), &networks).map_err(|reason| {
                    Box::new(EgressDenied(format!("{host}: {reason}")))
                        as Box<dyn StdError + Send + Sync>
                })?;
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_refused_in_every_spelling() {
        for refused in [
            "127.0.0.1",
            "169.254.169.254",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
            "2002:7f00:1::",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(
                check_address(ip(refused), &[]).is_err(),
                "{refused} was allowed"
            );
        }
        assert!(check_address(ip("93.184.216.34"), &[]).is_ok());
        assert!(check_address(ip("2606:2800:220:1:248:1893:25c8:1946"), &[]).is_ok());
    }

    #[test]
    fn named_networks_are_allowed_including_mapped_forms() {
        let nets = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(check_address(ip("127.0.0.1"), &nets).is_ok());
        assert!(check_address(ip("::ffff:127.0.0.1"), &nets).is_ok());
        assert!(check_address(ip("169.254.169.254"), &nets).is_err());
    }
}
