//! Validated strings and patterns used by policy files. Each is parsed once, at load, at the
//! serde boundary, so a bad pattern is reported with its line and never reaches a call.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

/// A glob such as `api-*` or `*.internal`, matched against a whole string.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Glob {
    text: String,
    matcher: globset::GlobMatcher,
}

impl Glob {
    /// Whether `candidate` matches the whole pattern.
    pub fn is_match(&self, candidate: &str) -> bool {
        self.matcher.is_match(candidate)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl TryFrom<String> for Glob {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        if text.is_empty() {
            return Err("empty pattern; use \"*\" to mean any".to_owned());
        }
        let glob = globset::GlobBuilder::new(&text)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("invalid glob {text:?}: {}", e.kind()))?;
        Ok(Self {
            matcher: glob.compile_matcher(),
            text,
        })
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

/// A regular expression matched against a whole string (it is anchored for you).
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct AnchoredRegex {
    text: String,
    regex: regex::Regex,
}

impl AnchoredRegex {
    /// Whether the whole of `candidate` matches.
    pub fn is_match(&self, candidate: &str) -> bool {
        self.regex.is_match(candidate)
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl TryFrom<String> for AnchoredRegex {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let build = |source: &str| regex::RegexBuilder::new(source).size_limit(1 << 20).build();
        // Report errors against the expression as written, not the anchored wrapper.
        build(&text).map_err(|e| {
            let reason = e.to_string();
            let reason = reason
                .lines()
                .last()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_owned();
            format!("invalid regular expression {text:?}: {reason}")
        })?;
        let regex = build(&format!("^(?:{text})$"))
            .map_err(|e| format!("invalid regular expression {text:?}: {e}"))?;
        Ok(Self { text, regex })
    }
}

impl fmt::Debug for AnchoredRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

/// A host pattern in an allow-list: a glob over names, or a CIDR over addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub enum HostPattern {
    /// `*.internal`, `db-1.example.com`.
    Name(Glob),
    /// `10.0.0.0/8`, `192.0.2.7` (a bare address is a /32 or /128).
    Network(IpNet),
}

impl HostPattern {
    /// Whether `host` (a name or an address literal) is covered.
    pub fn covers(&self, host: &str) -> bool {
        match (self, host.parse::<IpAddr>()) {
            (Self::Network(net), Ok(ip)) => net.contains(&ip),
            (Self::Name(glob), Err(_)) => glob.is_match(&host.to_ascii_lowercase()),
            _ => false,
        }
    }
}

impl TryFrom<String> for HostPattern {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(Self::Network(net));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Self::Network(IpNet::from(ip)));
        }
        if text.starts_with('-')
            || text
                .chars()
                .any(|c| c.is_whitespace() || c == '@' || c == '/')
        {
            return Err(format!(
                "invalid host pattern {text:?}: expected a host name glob or a CIDR"
            ));
        }
        Glob::try_from(text.to_ascii_lowercase()).map(Self::Name)
    }
}

/// A network in CIDR form (`10.0.0.0/8`); a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Network(pub IpNet);

impl TryFrom<String> for Network {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .map(Self)
            .map_err(|_| {
                format!(
                    "invalid network {text:?}: expected a CIDR such as \"10.0.0.0/8\" or an address"
                )
            })
    }
}

/// A DNS-label style identifier: lowercase letters, digits and `-`, starting with a letter
/// or digit. Used for runbook names and ssh command ids.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Identifier(String);

impl Identifier {
    /// The identifier text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Identifier {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let valid = !text.is_empty()
            && text.len() <= 63
            && text.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid {
            Ok(Self(text))
        } else {
            Err(format!(
                "invalid name {text:?}: use 1-63 lowercase letters, digits and '-', starting with a letter or digit"
            ))
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_cover_names_and_networks() {
        let name = HostPattern::try_from("*.internal".to_owned()).unwrap();
        let net = HostPattern::try_from("10.0.0.0/8".to_owned()).unwrap();
        assert!(name.covers("db-1.internal"));
        assert!(!name.covers("db-1.internal.evil.com"));
        assert!(!name.covers("10.1.2.3"));
        assert!(net.covers("10.1.2.3"));
        assert!(!net.covers("11.0.0.1"));
        assert!(HostPattern::try_from("-oProxyCommand=x".to_owned()).is_err());
    }

    #[test]
    fn regexes_are_anchored() {
        let re = AnchoredRegex::try_from("[0-9]{1,3}".to_owned()).unwrap();
        assert!(re.is_match("30"));
        assert!(!re.is_match("30; rm -rf /"));
    }
}
