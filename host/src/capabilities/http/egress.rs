//! The SSRF guard: which addresses a runbook's HTTP requests may reach.
//!
//! Loopback, private, link-local (cloud metadata at 169.254.169.254), CGNAT, documentation,
//! multicast and reserved addresses are refused unless the policy's `[http] networks` names
//! them. An IPv6 address that carries IPv4 is judged by the IPv4 it carries: IPv4-mapped
//! `::ffff:a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64
//! `64:ff9b::/96` and local-use `64:ff9b:1::/48`, 6to4 `2002::/16` and Teredo `2001::/32`
//! (server and client). Names are resolved once, by the host; every address must pass, and
//! the connection goes only to those addresses (no second lookup, so no DNS rebinding).
//! IP-literal hosts never reach a resolver, so they are checked before the request is made.

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// An IPv6 form that carries IPv4 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `::ffff:a.b.c.d` (RFC 4291).
    Mapped,
    /// `::ffff:0:a.b.c.d` (RFC 2765).
    Translated,
    /// `::a.b.c.d`, deprecated (RFC 4291).
    Compatible,
    /// `64:ff9b::a.b.c.d`, the well-known NAT64 prefix (RFC 6052).
    Nat64,
    /// `64:ff9b:1::/48`, local-use NAT64 (RFC 8215).
    LocalNat64,
    /// `2002:aabb:ccdd::/48` (RFC 3056).
    SixToFour,
    /// `2001:0:server:…:client` with the client obfuscated (RFC 4380).
    Teredo,
}

impl Form {
    fn name(self) -> &'static str {
        match self {
            Self::Mapped => "IPv4-mapped",
            Self::Translated => "IPv4-translated",
            Self::Compatible => "IPv4-compatible",
            Self::Nat64 => "NAT64",
            Self::LocalNat64 => "local-use NAT64",
            Self::SixToFour => "6to4",
            Self::Teredo => "Teredo",
        }
    }
}

/// The IPv4 addresses an IPv6 address carries, the one a connection reaches first (a
/// Teredo client before its server); `None` for an IPv6 address of no such form.
fn embedded(v6: Ipv6Addr) -> Option<(Form, Vec<Ipv4Addr>)> {
    let b = v6.octets();
    let s = v6.segments();
    let v4 = |octets: [u8; 4]| Ipv4Addr::from(octets);
    let last = v4([b[12], b[13], b[14], b[15]]);
    let form = match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Form::Mapped,
        [0, 0, 0, 0, 0xffff, 0, _, _] => Form::Translated,
        // `::` and `::1` are IPv6's own unspecified and loopback addresses.
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => return None,
        [0, 0, 0, 0, 0, 0, _, _] => Form::Compatible,
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Form::Nat64,
        [0x64, 0xff9b, 1, ..] => {
            // The site picks the prefix length (/48, /56, /64 or /96, RFC 6052 section 2.2),
            // so the IPv4 address may sit in any of these places. A /48, /56 or /64 reading
            // needs bits 64-71 and the suffix after the address to be zero; a /96 reading
            // always fits. The prefix itself is never public, so the readings only say
            // which address a refusal names.
            let fits = |suffix: &[u8]| b[8] == 0 && suffix.iter().all(|&x| x == 0);
            let readings = [
                (v4([b[6], b[7], b[9], b[10]]), fits(&b[11..])),
                (v4([b[7], b[9], b[10], b[11]]), fits(&b[12..])),
                (v4([b[9], b[10], b[11], b[12]]), fits(&b[13..])),
                (last, true),
            ];
            let readings = readings
                .into_iter()
                .filter_map(|(address, fits)| fits.then_some(address))
                .collect();
            return Some((Form::LocalNat64, readings));
        }
        [0x2002, ..] => return Some((Form::SixToFour, vec![v4([b[2], b[3], b[4], b[5]])])),
        [0x2001, 0, ..] => {
            let client = v4([!b[12], !b[13], !b[14], !b[15]]);
            let server = v4([b[4], b[5], b[6], b[7]]);
            return Some((Form::Teredo, vec![client, server]));
        }
        _ => return None,
    };
    Some((form, vec![last]))
}

/// The address a connection would really reach, with IPv4 unwrapped from IPv6 forms (the
/// client of a Teredo address). A local-use NAT64 address is returned as it is: where its
/// IPv4 address sits depends on the site, so only a network naming the IPv6 address matches.
pub fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    match embedded(v6) {
        Some((Form::LocalNat64, _)) | None => ip,
        Some((_, carried)) => carried.first().map_or(ip, |v4| IpAddr::V4(*v4)),
    }
}

/// Why `ip` is not public: the kind of address, and the IPv4 address and form it was
/// found in when an IPv6 address carries a non-public IPv4 one.
fn judge(ip: IpAddr) -> Option<(&'static str, Option<(Ipv4Addr, Form)>)> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4).map(|kind| (kind, None)),
        IpAddr::V6(v6) => {
            let carried = embedded(v6).and_then(|(form, carried)| {
                carried
                    .into_iter()
                    .find_map(|v4| v4_kind(v4).map(|kind| (kind, Some((v4, form)))))
            });
            carried.or_else(|| v6_kind(v6).map(|kind| (kind, None)))
        }
    }
}

/// The kind of non-public address `ip` is, or `None` for a globally routable one. An IPv6
/// address carrying a non-public IPv4 address is of that address's kind.
pub fn non_public_kind(ip: IpAddr) -> Option<&'static str> {
    judge(ip).map(|(kind, _)| kind)
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

/// Whether a runbook whose policy names `networks` may connect to `ip`. A network matches
/// the address itself or the IPv4 address it carries (`canonical`), as the IP-literal
/// check does.
pub fn check_address(ip: IpAddr, networks: &[IpNet]) -> Result<(), String> {
    let real = canonical(ip);
    if networks
        .iter()
        .any(|net| net.contains(&real) || net.contains(&ip))
    {
        return Ok(());
    }
    match judge(ip) {
        None => Ok(()),
        Some((kind, None)) => Err(format!(
            "{ip} is a {kind} address; name it in [http] networks to allow it"
        )),
        Some((kind, Some((v4, form)))) => Err(format!(
            "{ip} carries {v4} ({} form), a {kind} address; name it in [http] networks to allow it",
            form.name()
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
mod tests;
