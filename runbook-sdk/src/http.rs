//! Outbound HTTP through the host (WIT `quell:runbook/http`).
//!
//! The host checks each request against the policy's URL rules and its SSRF guard, and hands
//! redirects back instead of following them.
//!
//! ```
//! use quell_runbook_sdk::http::{self, Method, Request};
//!
//! let request = Request::new(Method::Post, "https://hooks.example.com/notify")
//!     .header("content-type", "application/json")
//!     .body(r#"{"text":"hello"}"#);
//! assert_eq!(request.headers.len(), 1);
//! # let _ = http::send(&request);
//! ```

use crate::HostError;
pub use crate::bindings::quell::runbook::http::{Method, Request, Response};

/// Sends a request. Any status, including 4xx, 5xx and redirects, is `Ok`.
pub fn send(request: &Request) -> Result<Response, HostError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::quell::runbook::http::send(request)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::dispatch_http(request)
    }
}

/// `GET url` with no headers.
pub fn get(url: &str) -> Result<Response, HostError> {
    send(&Request::new(Method::Get, url))
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header called `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, with invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Method {
    /// The method as HTTP spells it: `GET`, `POST`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;

    /// Parses `GET`, `HEAD`, `POST`, `PUT`, `PATCH` or `DELETE`, in any case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [
            Self::Get,
            Self::Head,
            Self::Post,
            Self::Put,
            Self::Patch,
            Self::Delete,
        ]
        .into_iter()
        .find(|method| method.as_str().eq_ignore_ascii_case(text))
        .ok_or_else(|| format!("unknown HTTP method {text:?}"))
    }
}
