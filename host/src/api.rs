//! The HTTP surface: webhooks, the incident API, `/metrics`, health and readiness.
//!
//! Every error is JSON, `{"error": "..."}`, and says what is wrong.

mod auth;
mod incidents;
mod openapi;
mod slack;
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
    Router::new()
        .nest("/api", api)
        .merge(webhooks::routes(&state))
        .route("/slack/interactions", post(slack::interactions))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            state.config.server.max_concurrent_requests.max(1),
        ))
        .with_state(state)
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let gauges = app
        .store
        .read(crate::store::queries::gauges)
        .await
        .unwrap_or_default();
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

async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    if app.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

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

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => Self::unavailable(error.to_string()),
            StoreError::Failed(message) => {
                tracing::error!(error = %message, "database error");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
            }
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
