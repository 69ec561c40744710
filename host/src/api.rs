//! The HTTP surface: webhooks, the incident API, `/metrics`, health and readiness.
//!
//! Every error is JSON, `{"error": "..."}`, and says what is wrong.

pub(crate) mod auth;
pub(crate) mod incidents;
mod openapi;
pub mod slack;
mod webhooks;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::store::{Store, StoreError};

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// Runbooks and workers.
    pub pipeline: Arc<Pipeline>,
    /// Counters and histograms.
    pub metrics: Arc<Metrics>,
    /// The configuration the daemon started with.
    pub config: Arc<Config>,
    /// False until start-up finished and again once shutdown begins.
    pub ready: AtomicBool,
    /// The console's signed-in browsers.
    pub sessions: crate::console::session::Sessions,
}

/// The router for `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/incidents", get(incidents::list))
        .route("/incidents/{id}", get(incidents::show))
        .route("/incidents/{id}/postmortem", get(incidents::postmortem))
        .route("/incidents/{id}/{action}", post(incidents::act))
        .route("/runbooks", get(incidents::runbooks))
        .route("/reload", post(incidents::reload))
        .route(
            "/remediation",
            get(incidents::remediation).post(incidents::set_remediation),
        )
        .route("/dead-letters", get(incidents::dead_letters))
        .route("/notifications/dead", get(incidents::dead_notifications))
        .route("/openapi.json", get(openapi::document))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::api,
        ));
    let limit = state.config.server.max_concurrent_requests.max(1);
    let slots = Arc::new(Slots {
        limit,
        timeout: state.config.server.request_timeout.0,
        free: Arc::new(tokio::sync::Semaphore::new(limit)),
        metrics: state.metrics.clone(),
    });
    let limited = Router::new()
        .nest("/api", api)
        .merge(webhooks::routes(&state))
        .route("/slack/interactions", post(slack::interactions))
        .route("/metrics", get(metrics))
        .merge(crate::console::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(axum::middleware::from_fn_with_state(slots, shed));
    // Health answers even when everything else is shed: an orchestrator must not restart a
    // daemon for being busy.
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(limited)
        .with_state(state)
}

/// The request slots of `[server] max_concurrent_requests`.
#[derive(Debug)]
struct Slots {
    limit: usize,
    timeout: std::time::Duration,
    free: Arc<tokio::sync::Semaphore>,
    metrics: Arc<Metrics>,
}

/// Beyond `max_concurrent_requests`, a request is answered 503 with `Retry-After` at once
/// rather than queued: Alertmanager and the other senders retry, and a burst cannot pile up
/// connections and memory while the database is slow. A request that takes longer than
/// `request_timeout` (a trickled body) is answered 408 and gives its slot back; a write it
/// had already queued still commits, and the sender's retry is deduplicated.
async fn shed(
    State(slots): State<Arc<Slots>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Ok(_slot) = slots.free.clone().try_acquire_owned() else {
        slots.metrics.shed.inc();
        let mut error = ApiError::unavailable(format!(
            "quell is serving its limit of {} requests ([server] max_concurrent_requests); \
             retry shortly",
            slots.limit
        ));
        error.retry_after = Some(1);
        return error.into_response();
    };
    match tokio::time::timeout(slots.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request took longer than {} ([server] request_timeout)",
                crate::config::HumanDuration(slots.timeout)
            ),
        )
        .into_response(),
    }
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let gauges = app.store.gauges().await.unwrap_or_default();
    let text = app.metrics.render(&gauges, app.store.queued_writes());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Ready once started and while the database answers: a replica that lost its database is
/// taken out of its Service, so senders retry on one that can commit.
async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    if !app.ready.load(Ordering::Acquire) {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response();
    }
    let unavailable =
        |message: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message).into_response();
    match tokio::time::timeout(READY_CHECK, app.store.check()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => unavailable(e.to_string()),
        Err(_) => unavailable(format!(
            "the database did not answer within {}s",
            READY_CHECK.as_secs()
        )),
    }
}

/// How long `/readyz` waits for the database.
const READY_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// An error answer: a status and a message, as `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u32>,
}

impl ApiError {
    /// An error with this status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            retry_after: Some(5),
        }
    }
}

/// A store error as a client sees it: a generic text and the status, never the database's
/// own message; the detail goes to the log.
impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let source = std::error::Error::source(&error).map(ToString::to_string);
        if error.is_unavailable() {
            tracing::warn!(%error, ?source, "database unavailable");
            Self::unavailable("the database is unavailable: try again later")
        } else {
            tracing::error!(%error, ?source, "database error");
            Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error: the request could not be completed; the daemon's log says why",
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({"error": self.message}))).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
