//! The http capability: requests the policy allows, to addresses the SSRF guard allows.
//!
//! The host parses the URL, checks method and URL against `[[http.allow]]`, checks IP-literal
//! hosts against the guard (names are checked by the guarded resolver at connect time), adds
//! the rule's secret headers (which the runbook never sees), sends without proxies and without
//! following redirects, and caps the response body. The `[http]` policy section itself is
//! [`crate::policy::http`].

mod egress;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;

use super::{CallContext, Capability, Measured, Target, Verdict};
use crate::bindings::quell::runbook::http::{Host, Method, Request, Response};
use crate::bindings::quell::runbook::types::HostError;
use crate::config::HttpConfig;
use crate::policy::http::{HttpMethod, HttpPolicy};

pub use egress::{EgressDenied, canonical, check_address, non_public_kind};

impl HttpMethod {
    fn from_wit(method: Method) -> Self {
        match method {
            Method::Get => Self::Get,
            Method::Head => Self::Head,
            Method::Post => Self::Post,
            Method::Put => Self::Put,
            Method::Patch => Self::Patch,
            Method::Delete => Self::Delete,
        }
    }
}

impl HttpPolicy {
    /// The index of the rule allowing `method` on `url`, or why none does.
    fn check(&self, method: HttpMethod, url: &Url) -> Result<usize, String> {
        self.allow
            .iter()
            .position(|rule| rule.methods.contains(&method) && rule.urls.iter().any(|p| p.matches(url)))
            .ok_or_else(|| {
                let mut origin = url.clone();
                origin.set_query(None);
                format!(
                    "no [[http.allow]] rule allows {method} {origin}; a rule with methods = [\"{method}\"], urls = [\"{origin}\"] would"
                )
            })
    }
}

/// The host side: limits and secrets. Clients are built per runbook by [`HttpCap::client`].
#[derive(Debug)]
pub struct HttpCap {
    config: HttpConfig,
    secrets: BTreeMap<String, String>,
}

/// The HTTP client for endpoints the operator chose — notifications (Slack, PagerDuty, the
/// outgoing webhook) and the CLI talking to its daemon — so no egress guard, but no proxies
/// from the environment, no redirects (a 3xx is a failure, as Standard Webhooks says) and a
/// total timeout.
pub fn operator_client(timeout: std::time::Duration) -> anyhow::Result<reqwest::Client> {
    #[allow(
        clippy::disallowed_methods,
        reason = "the second of the two places that build clients: operator-configured endpoints, \
                  which the runbook egress guard does not apply to"
    )]
    let builder = reqwest::Client::builder();
    Ok(builder
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout.min(std::time::Duration::from_secs(5)))
        .timeout(timeout)
        .user_agent(concat!("quell/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

impl HttpCap {
    /// Keeps the limits and the secrets policies may inject.
    pub fn new(config: &HttpConfig, secrets: BTreeMap<String, String>) -> Self {
        Self {
            config: config.clone(),
            secrets,
        }
    }

    /// The one place Quell builds an HTTP client for runbooks: no proxies, no redirects,
    /// timeouts, and a resolver that only yields addresses the policy's networks allow.
    pub fn client(&self, policy: &HttpPolicy) -> anyhow::Result<reqwest::Client> {
        #[allow(
            clippy::disallowed_methods,
            reason = "the one place that builds clients for runbooks: SSRF-guarded resolver, \
                      no proxies, no redirects"
        )]
        let builder = reqwest::Client::builder();
        Ok(builder
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.config.connect_timeout.0)
            .timeout(self.config.timeout.0)
            .dns_resolver(std::sync::Arc::new(egress::GuardedResolver::new(
                policy.networks.iter().map(|n| n.0).collect(),
            )))
            .user_agent(concat!("quell/", env!("CARGO_PKG_VERSION")))
            .build()?)
    }

    /// Checks that every secret a policy names exists; called when a runbook is loaded.
    pub fn check_secrets(&self, policy: &HttpPolicy) -> Result<(), String> {
        for rule in &policy.allow {
            for (header, secret) in &rule.headers {
                HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| format!("invalid header name {header:?}"))?;
                if !self.secrets.contains_key(secret) {
                    return Err(format!(
                        "header {header:?} uses secret {secret:?}, which the host configuration's [secrets] does not define"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Headers a runbook may not set: they would change where or how the request goes.
const RESERVED_HEADERS: &[&str] = &[
    // The host reads every response whole and unencoded, to keep secrets out of it: a
    // compressed or partial body could carry one past the redactor.
    "accept-encoding",
    "range",
    "if-range",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
];

fn guest_headers(
    headers: &[(String, String)],
    injected: &BTreeMap<String, String>,
) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        let reserved = RESERVED_HEADERS.contains(&header.as_str())
            || header.as_str().starts_with("proxy-")
            || injected.keys().any(|k| k.eq_ignore_ascii_case(name));
        if reserved {
            return Err(format!(
                "header {name:?} is set by the host, not the runbook"
            ));
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("invalid value for header {name:?}"))?;
        map.append(header, value);
    }
    Ok(map)
}

/// Why a request was not sent.
enum Refusal {
    Denied(String),
    Failed(String),
}

fn parse_url(ctx: &CallContext, req: &Request) -> Result<(Url, usize), Refusal> {
    let url = Url::parse(&req.url)
        .map_err(|e| Refusal::Denied(format!("invalid URL {:?}: {e}", req.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refusal::Denied(format!(
            "scheme {:?} is not allowed; use http or https",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::Denied(
            "credentials in URLs are not allowed".to_owned(),
        ));
    }
    // An encoded '/' or backslash would satisfy a `*` path glob here and become a separator on a
    // server that decodes it.
    let path = url.path().to_ascii_lowercase();
    if path.contains("%2f") || path.contains("%5c") {
        return Err(Refusal::Denied(
            "encoded '/' or '\\' in the URL path is not allowed".to_owned(),
        ));
    }
    let method = HttpMethod::from_wit(req.method);
    let rule = ctx
        .policy
        .http
        .check(method, &url)
        .map_err(Refusal::Denied)?;
    // IP literals never reach the resolver: check them here.
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    if let Some(ip) = literal {
        let named = ctx
            .policy
            .http
            .networks
            .iter()
            .any(|n| n.0.contains(&ip) || n.0.contains(&egress::canonical(ip)));
        if !named {
            let kind = non_public_kind(ip).map_or(String::new(), |k| format!(" (a {k} address)"));
            return Err(Refusal::Denied(format!(
                "IP-literal host {ip}{kind} is not named in [http] networks"
            )));
        }
    }
    Ok((url, rule))
}

impl CallContext {
    async fn send_http(
        &mut self,
        req: &Request,
        url: Url,
        rule: usize,
    ) -> Result<(Response, u64), Refusal> {
        let policy_rule = &self.policy.http.allow[rule];
        let mut headers =
            guest_headers(&req.headers, &policy_rule.headers).map_err(Refusal::Denied)?;
        for (name, secret) in &policy_rule.headers {
            let value =
                self.caps.http.secrets.get(secret).ok_or_else(|| {
                    Refusal::Failed(format!("secret {secret:?} is not configured"))
                })?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                Refusal::Failed(format!("secret {secret:?} is not a valid header value"))
            })?;
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Refusal::Failed(format!("invalid header name {name:?}")))?;
            headers.insert(name, value);
        }
        // No request outlives the export's deadline, so it ends in time to be recorded.
        let timeout = self.time_left().min(self.caps.http.config.timeout.0);
        let mut request = self
            .http_client
            .request(HttpMethod::from_wit(req.method).as_reqwest(), url)
            .headers(headers)
            .timeout(timeout);
        if let Some(body) = &req.body {
            request = request.body(body.clone());
        }
        let mut response = request
            .header(reqwest::header::ACCEPT_ENCODING, "identity")
            .send()
            .await
            .map_err(describe_reqwest_error)?;
        if let Some(encoding) = response
            .headers()
            .get(reqwest::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .filter(|e| !e.eq_ignore_ascii_case("identity"))
        {
            return Err(Refusal::Failed(format!(
                "the server sent a {encoding}-encoded body although the host asked for none; \
                 Quell hands over only bodies it can check for secrets"
            )));
        }
        let cap = self.caps.http.config.max_response.0;
        if response.content_length().is_some_and(|len| len > cap) {
            return Err(Refusal::Failed(format!("too-large:{cap}")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(describe_reqwest_error)? {
            if (body.len() + chunk.len()) as u64 > cap {
                return Err(Refusal::Failed(format!("too-large:{cap}")));
            }
            body.extend_from_slice(&chunk);
        }
        // A server may echo the secret headers a policy attached: the runbook never gets them.
        let redact = &self.caps.redact;
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    redact.text(String::from_utf8_lossy(v.as_bytes()).into_owned()),
                )
            })
            .collect();
        let size = body.len() as u64;
        Ok((
            Response {
                status: response.status().as_u16(),
                headers,
                body: redact.bytes(body),
            },
            size,
        ))
    }
}

fn describe_reqwest_error(error: reqwest::Error) -> Refusal {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(err) = source {
        if let Some(denied) = err.downcast_ref::<EgressDenied>() {
            return Refusal::Denied(denied.0.clone());
        }
        source = err.source();
    }
    if error.is_timeout() {
        return Refusal::Failed("timeout".to_owned());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    Refusal::Failed(text)
}

/// The largest request body a runbook may send.
pub const MAX_REQUEST_BODY: usize = 1 << 20;
/// The longest URL a runbook may ask for.
pub const MAX_URL: usize = 8 << 10;
/// The most header bytes (names and values) a runbook may send.
pub const MAX_REQUEST_HEADERS: usize = 64 << 10;

const TOO_LARGE: &str = "too large: ";

/// Why a request is too large to send, before anything else is looked at.
fn oversized(req: &Request) -> Option<Refusal> {
    let headers: usize = req.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    let body = req.body.as_ref().map_or(0, Vec::len);
    let why = if req.url.len() > MAX_URL {
        format!(
            "the URL is {} bytes, over the {MAX_URL}-byte limit",
            req.url.len()
        )
    } else if headers > MAX_REQUEST_HEADERS {
        format!("the headers are {headers} bytes, over the {MAX_REQUEST_HEADERS}-byte limit")
    } else if body > MAX_REQUEST_BODY {
        format!("the body is {body} bytes, over the {MAX_REQUEST_BODY}-byte limit")
    } else {
        return None;
    };
    Some(Refusal::Denied(format!("{TOO_LARGE}{why}")))
}

/// A response as a call record holds it (the body as text), read back by a replay.
#[derive(serde::Deserialize)]
struct RecordedResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Host for CallContext {
    async fn send(&mut self, req: Request) -> Result<Response, HostError> {
        let started = Instant::now();
        // The runbook's own header names; values and the host's secret headers stay out of records.
        let header_names: Vec<_> = req.headers.iter().map(|(k, _)| k.clone()).collect();
        let request = json!({
            "method": HttpMethod::from_wit(req.method).to_string(),
            "url": req.url,
            "headers": header_names,
            "body_bytes": req.body.as_ref().map_or(0, Vec::len),
        });
        let method = HttpMethod::from_wit(req.method);
        let command = format!("{method} {}", req.url);
        let (verdict, target) = match oversized(&req).map_or_else(|| parse_url(self, &req), Err) {
            Err(Refusal::Denied(reason) | Refusal::Failed(reason)) => (Verdict::Deny(reason), None),
            Ok((url, rule)) => (
                self.gate(method.effect(), Ok(format!("[[http.allow]] #{}", rule + 1))),
                Some((url, rule)),
            ),
        };
        // A write holds its resource: the URL without its query.
        let lock = target.as_ref().map(|(url, _): &(Url, usize)| {
            let resource = format!("{}{}", url.origin().ascii_serialization(), url.path());
            Target {
                key: format!("http {resource}"),
                shown: resource,
            }
        });
        let (verdict, journaled) = self
            .journal_start(Capability::Http, &request, verdict, Some(&command), lock)
            .await;
        // Replaying a recorded incident: the answer comes from the recording, as recorded.
        let replayed = match &verdict {
            Verdict::Deny(_) => None,
            _ => self.replayed::<RecordedResponse>(Capability::Http, &request),
        };
        let (result, status, bytes) = match (&verdict, target, journaled) {
            (_, _, _) if let Some(result) = replayed => {
                let result = result.map(|r| Response {
                    status: r.status,
                    headers: r.headers,
                    body: r.body.into_bytes(),
                });
                let status = result.as_ref().ok().map(|r| i32::from(r.status));
                (result, status, 0)
            }
            (Verdict::Deny(reason), _, _) if reason.starts_with(TOO_LARGE) => {
                (Err(HostError::TooLarge), None, 0)
            }
            (Verdict::Deny(reason), _, _) => (Err(HostError::Denied(reason.clone())), None, 0),
            (_, _, Err(error)) => (Err(error), None, 0),
            (Verdict::Simulate(_), _, _) => {
                let body = b"dry run: request not sent".to_vec();
                let headers = vec![("x-quell-dry-run".to_owned(), "true".to_owned())];
                (
                    Ok(Response {
                        status: 200,
                        headers,
                        body,
                    }),
                    None,
                    0,
                )
            }
            (Verdict::Execute(_) | Verdict::Write(_), Some((url, rule)), Ok(())) => {
                match self.send_http(&req, url, rule).await {
                    Ok((response, size)) => {
                        let status = i32::from(response.status);
                        (Ok(response), Some(status), size)
                    }
                    Err(Refusal::Denied(reason)) => (Err(HostError::Denied(reason)), None, 0),
                    Err(Refusal::Failed(reason)) if reason == "timeout" => {
                        (Err(HostError::Timeout), None, 0)
                    }
                    Err(Refusal::Failed(reason)) if reason.starts_with("too-large:") => {
                        (Err(HostError::TooLarge), None, 0)
                    }
                    Err(Refusal::Failed(reason)) => (
                        Err(HostError::Failed(self.caps.redact.text(reason))),
                        None,
                        0,
                    ),
                }
            }
            (Verdict::Execute(_) | Verdict::Write(_), None, Ok(())) => (
                Err(HostError::Failed("host bug: no target".to_owned())),
                None,
                0,
            ),
        };
        let recorded = result
            .as_ref()
            .map(|r| json!({ "status": r.status, "headers": r.headers, "body": String::from_utf8_lossy(&r.body) }))
            .map_err(Clone::clone);
        let measured = Measured {
            exit_status: status,
            output_bytes: bytes,
        };
        let recorded = self.record(
            Capability::Http,
            request,
            &verdict,
            started,
            recorded,
            measured,
            Some(command),
        );
        // What the record withheld (over the record budget) is withheld from the runbook too.
        match recorded {
            Err(HostError::TooLarge) if result.is_ok() => Err(HostError::TooLarge),
            _ => result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn encoded_separators_in_paths_are_refused() {
        let policy = "[runbook]\nname = \"t\"\ncomponent = \"t.wasm\"\n[http]\nnetworks = [\"127.0.0.2\"]\n\
                      [[http.allow]]\nmethods = [\"GET\"]\nurls = [\"http://127.0.0.2:*/files/*\"]\n";
        let mut ctx = crate::capabilities::testing::context(
            policy,
            crate::capabilities::Phase::Diagnose,
            false,
        );
        for url in [
            "http://127.0.0.2:9/files/..%2Fadmin",
            "http://127.0.0.2:9/files/..%5cadmin",
        ] {
            let request = Request {
                method: Method::Get,
                url: url.to_owned(),
                headers: Vec::new(),
                body: None,
            };
            let error = ctx.send(request).await.unwrap_err();
            assert!(
                matches!(&error, HostError::Denied(r) if r.contains("encoded")),
                "{url}: {error:?}"
            );
        }
    }
}
