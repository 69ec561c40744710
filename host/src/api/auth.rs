//! Credentials: bearer tokens (several active, for rotation) and basic auth, compared in
//! constant time. Failures get a generic 401; the reason goes to the log, not the caller.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};
use crate::config::{BasicCredential, SourceConfig};
use crate::console::session::Role;

/// Equal without leaking where the first difference is (or the secret's length).
fn same(given: &[u8], expected: &[u8]) -> bool {
    Sha256::digest(given)
        .ct_eq(&Sha256::digest(expected))
        .into()
}

fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| value[7..].trim_ascii())
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn token_ok(headers: &HeaderMap, tokens: &[String]) -> bool {
    bearer(headers).is_some_and(|given| {
        // Check every token so the time taken does not say which one matched.
        tokens
            .iter()
            .fold(false, |ok, token| same(given, token.as_bytes()) | ok)
    })
}

fn basic_ok(headers: &HeaderMap, pairs: &[BasicCredential]) -> bool {
    basic(headers).is_some_and(|(user, password)| {
        pairs.iter().fold(false, |ok, pair| {
            (same(user.as_bytes(), pair.username.as_bytes())
                & same(password.as_bytes(), pair.password.as_bytes()))
                | ok
        })
    })
}

/// Whether a webhook request carries one of the source's credentials. A source with no
/// credentials configured is open (start-up refuses that off loopback).
pub fn source_ok(headers: &HeaderMap, source: &SourceConfig) -> bool {
    if source.tokens.is_empty() && source.basic.is_empty() {
        return true;
    }
    token_ok(headers, &source.tokens) || basic_ok(headers, &source.basic)
}

/// The 401 every authentication failure gets.
pub fn unauthorized() -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "missing or invalid credentials").into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// The role a request's bearer token carries: operator (`[auth] api_tokens`), viewer
/// (`viewer_tokens`), or none. Both lists are checked, so the time taken does not say which
/// one matched.
pub fn role(headers: &HeaderMap, auth: &crate::config::AuthConfig) -> Option<Role> {
    let (operator, viewer) = (
        token_ok(headers, &auth.api_tokens),
        token_ok(headers, &auth.viewer_tokens),
    );
    match (operator, viewer) {
        (true, _) => Some(Role::Operator),
        (false, true) => Some(Role::Viewer),
        (false, false) => None,
    }
}

/// Middleware for `/api/*` when any token is set: an operator token (`[auth] api_tokens`)
/// may do anything; a viewer token (`[auth] viewer_tokens`) may only read.
pub async fn api(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let auth = &app.config.auth;
    if auth.api_tokens.is_empty() && auth.viewer_tokens.is_empty() {
        return next.run(request).await;
    }
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    match role(request.headers(), auth) {
        Some(Role::Operator) => next.run(request).await,
        Some(Role::Viewer) if reads => next.run(request).await,
        Some(Role::Viewer) => {
            tracing::warn!(path = %request.uri().path(), method = %request.method(), "API request refused: a viewer token may only read");
            ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{} {} needs an operator token ([auth] api_tokens); this one is a viewer's \
                     ([auth] viewer_tokens), which may only read",
                    request.method(),
                    request.uri().path()
                ),
            )
            .into_response()
        }
        None => {
            tracing::warn!(path = %request.uri().path(), "API request refused: bad or missing token");
            unauthorized()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn rotated_tokens_are_all_accepted_and_others_refused() {
        let source = SourceConfig {
            tokens: vec!["old-token".to_owned(), "new-token".to_owned()],
            ..SourceConfig::default()
        };
        assert!(source_ok(&with("Bearer old-token"), &source));
        assert!(source_ok(&with("bearer new-token"), &source));
        assert!(!source_ok(&with("Bearer new-tokeN"), &source));
        assert!(!source_ok(&HeaderMap::new(), &source));
    }

    #[test]
    fn basic_auth_needs_both_parts() {
        let source = SourceConfig {
            basic: vec![BasicCredential {
                username: "am".to_owned(),
                password: "pw".to_owned(),
            }],
            ..SourceConfig::default()
        };
        // "am:pw", as Alertmanager sends it.
        assert!(source_ok(&with("Basic YW06cHc="), &source));
        // "am:px"
        assert!(!source_ok(&with("Basic YW06cHg="), &source));
    }
}
