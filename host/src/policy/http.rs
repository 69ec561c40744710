//! `[http]` in a policy: URL rules and the non-public networks a runbook may reach.
//!
//! Enforced by the http capability, which matches each request against these rules and the
//! SSRF guard.

use std::collections::BTreeMap;
use std::fmt;

use reqwest::Url;
use serde::Deserialize;

use super::Effect;
use crate::syntax::Network;

/// `[http]` in a policy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPolicy {
    /// Non-public networks (CIDRs) this runbook may reach; IP-literal URLs must be in one.
    #[serde(default)]
    pub networks: Vec<Network>,
    /// Each rule allows its methods on its URLs.
    #[serde(default)]
    pub allow: Vec<HttpRule>,
}

/// One `[[http.allow]]` rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRule {
    /// `GET`, `POST`, …
    pub methods: Vec<HttpMethod>,
    /// URL patterns: `http://*.internal/health`, `https://api.example.com:*/v1/**`.
    pub urls: Vec<UrlPattern>,
    /// Headers the host adds from its secrets: header name → secret name.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// An HTTP method as written in policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    /// The method as reqwest spells it.
    pub(crate) fn as_reqwest(self) -> reqwest::Method {
        match self {
            Self::Get => reqwest::Method::GET,
            Self::Head => reqwest::Method::HEAD,
            Self::Post => reqwest::Method::POST,
            Self::Put => reqwest::Method::PUT,
            Self::Patch => reqwest::Method::PATCH,
            Self::Delete => reqwest::Method::DELETE,
        }
    }

    /// GET and HEAD read; the rest write.
    pub fn effect(self) -> Effect {
        match self {
            Self::Get | Self::Head => Effect::Read,
            _ => Effect::Write,
        }
    }
}

impl fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_reqwest().as_str())
    }
}

/// `scheme://host[:port]/path` with `*` globs: in the host `*` spans any characters but `/`
/// and `:`; in the path `*` stays within a segment and `**` spans segments. No port means the
/// scheme's default; `:*` means any. Query strings are not part of the match.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct UrlPattern {
    text: String,
    regex: regex::Regex,
}

impl fmt::Debug for UrlPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl TryFrom<String> for UrlPattern {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let bad = |why: &str| format!("invalid URL pattern {text:?}: {why}");
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| bad("expected scheme://host/path"))?;
        let default_port = match scheme {
            "http" => "80",
            "https" => "443",
            _ => return Err(bad("the scheme must be http or https")),
        };
        if rest.contains(['?', '#', '@']) {
            return Err(bad(
                "queries, fragments and credentials are not part of a pattern",
            ));
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        // `[v6]:port`, `[v6]`, `host:port`, `host`.
        let (host, port) = match authority.strip_prefix('[').and_then(|a| a.split_once(']')) {
            Some((v6, "")) => (&authority[..v6.len() + 2], default_port),
            Some((v6, rest)) => match rest.strip_prefix(':') {
                Some(port) => (&authority[..v6.len() + 2], port),
                None => return Err(bad("expected :port after the IPv6 address")),
            },
            None => authority
                .rsplit_once(':')
                .unwrap_or((authority, default_port)),
        };
        if port != "*" && port.parse::<u16>().is_err() {
            return Err(bad("the port must be a number or *"));
        }
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        if host.contains("**") {
            return Err(bad(
                "'**' is for paths; in a host, '*' already spans labels",
            ));
        }
        let glob = |part: &str, star: &str| {
            part.split("**")
                .map(|chunk| {
                    chunk
                        .split('*')
                        .map(regex::escape)
                        .collect::<Vec<_>>()
                        .join(star)
                })
                .collect::<Vec<_>>()
                .join(".*")
        };
        let port = if port == "*" {
            "[0-9]+".to_owned()
        } else {
            regex::escape(port)
        };
        let source = format!(
            "^{}://{}:{}{}$",
            regex::escape(scheme),
            glob(&host.to_ascii_lowercase(), "[^/:]*"),
            port,
            glob(path, "[^/]*")
        );
        let regex = regex::Regex::new(&source).map_err(|e| bad(&e.to_string()))?;
        Ok(Self { text, regex })
    }
}

impl UrlPattern {
    /// Whether the URL's scheme, host, port and path match; the query is not looked at.
    pub(crate) fn matches(&self, url: &Url) -> bool {
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            Some(host) => host.to_string(),
            None => return false,
        };
        let port = url.port_or_known_default().unwrap_or(0);
        self.regex
            .is_match(&format!("{}://{host}:{port}{}", url.scheme(), url.path()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, url: &str) -> bool {
        UrlPattern::try_from(pattern.to_owned())
            .unwrap()
            .matches(&Url::parse(url).unwrap())
    }

    #[test]
    fn url_patterns_match_scheme_host_port_and_path() {
        assert!(matches(
            "http://*.internal/health",
            "http://api.internal/health"
        ));
        assert!(matches(
            "http://*.internal/health",
            "http://API.internal:80/health?x=1"
        ));
        assert!(!matches(
            "http://*.internal/health",
            "http://api.internal:8080/health"
        ));
        assert!(!matches(
            "http://*.internal/health",
            "https://api.internal/health"
        ));
        assert!(!matches(
            "http://*.internal/health",
            "http://api.internal.evil.com/health"
        ));
        assert!(!matches(
            "http://*.internal/health",
            "http://api.internal/health/../admin"
        ));
        assert!(matches(
            "http://127.0.0.1:*/**",
            "http://127.0.0.1:9090/a/b"
        ));
        assert!(matches("http://[::1]/x", "http://[::1]/x"));
        assert!(matches("http://[::1]:*/x", "http://[::1]:8080/x"));
        assert!(!matches(
            "https://api.example.com/v1/*",
            "https://api.example.com/v1/a/b"
        ));
        assert!(matches(
            "https://api.example.com/v1/**",
            "https://api.example.com/v1/a/b"
        ));
        assert!(UrlPattern::try_from("http://h:port/".to_owned()).is_err());
        assert!(UrlPattern::try_from("http://[::1]x/".to_owned()).is_err());
    }
}
