//! `POST /webhooks/{alertmanager,grafana,generic}`: authenticate, bound the body, parse,
//! and commit before answering.
//!
//! | situation | answer |
//! |---|---|
//! | stored (alerts applied to incidents) | 200 with what each alert did |
//! | JSON but unusable, or meant for another route | kept as a dead letter with the reason; 202 to Alertmanager and Grafana (they re-send on any failure), 422 on the generic route |
//! | not JSON | 400 with the parser's position and reason |
//! | bad or missing credentials | 401 |
//! | body over the route's limit | 413 |
//! | database unavailable, shutting down | 503 with `Retry-After` |

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::auth::{source_ok, unauthorized};
use super::{ApiError, AppState};
use crate::config::SourceConfig;
use crate::sources::{self, Rejection, Source};
use crate::store::{Arrival, Delivery, Effect};

/// The three webhook routes.
pub fn routes(_state: &Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/webhooks/alertmanager",
            post(|state, request| receive(state, Source::Alertmanager, request)),
        )
        .route(
            "/webhooks/grafana",
            post(|state, request| receive(state, Source::Grafana, request)),
        )
        .route(
            "/webhooks/generic",
            post(|state, request| receive(state, Source::Generic, request)),
        )
}

fn settings(app: &AppState, source: Source) -> &SourceConfig {
    match source {
        Source::Alertmanager => &app.config.sources.alertmanager,
        Source::Grafana => &app.config.sources.grafana,
        Source::Generic => &app.config.sources.generic.source,
    }
}

async fn receive(State(app): State<Arc<AppState>>, source: Source, request: Request) -> Response {
    let started = Instant::now();
    let (outcome, response) = match handle(&app, source, request).await {
        Ok((outcome, response)) => (outcome, response),
        Err((outcome, error)) => (outcome, error),
    };
    app.metrics
        .deliveries
        .get_or_create(&vec![
            ("source", source.name().to_owned()),
            ("outcome", outcome.to_owned()),
        ])
        .inc();
    if outcome == "accepted" || outcome == "dead_letter" {
        app.metrics
            .ack_seconds
            .get_or_create(&vec![("source", source.name().to_owned())])
            .observe(started.elapsed().as_secs_f64());
    }
    response
}

type Answer = Result<(&'static str, Response), (&'static str, Response)>;

async fn handle(app: &AppState, source: Source, request: Request) -> Answer {
    let settings = settings(app, source);
    if !source_ok(request.headers(), settings) {
        tracing::warn!(
            source = source.name(),
            "webhook refused: bad or missing credentials"
        );
        return Err(("unauthorized", unauthorized()));
    }
    if !app.ready.load(Ordering::Acquire) {
        return Err((
            "unavailable",
            ApiError::unavailable("the daemon is starting or shutting down").into_response(),
        ));
    }
    let limit = settings.body_limit;
    let too_large = || {
        (
            "too_large",
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body is larger than the {limit} limit of /webhooks/{}; \
                     lower the sender's max_alerts or raise [sources.{}] body_limit",
                    source.name(),
                    source.name()
                ),
            )
            .into_response(),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit.0) {
        return Err(too_large());
    }
    let request_content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match axum::body::to_bytes(Body::new(request.into_body()), limit.as_usize()).await {
        Ok(body) => body,
        Err(_) => return Err(too_large()),
    };
    let content_type = request_content_type.as_deref();
    let mut delivery = match sources::parse(
        source,
        &body,
        content_type,
        &app.config.sources.generic.fields,
    ) {
        Ok(delivery) => delivery,
        Err(Rejection::Malformed(message)) => {
            return Err((
                "malformed",
                ApiError::new(StatusCode::BAD_REQUEST, message).into_response(),
            ));
        }
        Err(Rejection::Unusable(reason)) => {
            let name = source.name();
            return match app
                .store
                .dead_letter(name, body.to_vec(), reason.clone())
                .await
            {
                Ok(id) => {
                    tracing::warn!(source = name, delivery = id, error = %reason, "delivery kept as a dead letter");
                    Ok((
                        "dead_letter",
                        (
                            source.dead_letter_status(),
                            axum::Json(json!({
                                "status": "dead-letter",
                                "delivery": id,
                                "error": reason,
                            })),
                        )
                            .into_response(),
                    ))
                }
                Err(e) => Err(("unavailable", ApiError::from(e).into_response())),
            };
        }
    };
    sources::map_severities(&mut delivery, &settings.severity);
    let runbooks = app.pipeline.runbooks();
    let group_by = &app.config.incidents.group_by;
    let group_key = delivery.group_key.as_deref();
    let arrivals: Vec<Arrival> = delivery
        .alerts
        .into_iter()
        .map(|incident| {
            let selected = runbooks.selected(&incident);
            let group = group_by.key(group_key, &incident);
            Arrival::new(incident, selected).grouped(group)
        })
        .collect();
    let name = source.name();
    let ingested = match app
        .store
        .ingest(Delivery {
            source: name,
            body: body.to_vec(),
            truncated: delivery.truncated,
            arrivals,
            reopen_window_ms: i64::try_from(app.config.pipeline.reopen_window.0.as_millis())
                .unwrap_or(i64::MAX),
        })
        .await
    {
        Ok(ingested) => ingested,
        Err(e) => return Err(("unavailable", ApiError::from(e).into_response())),
    };
    app.metrics
        .escalations
        .inc_by(u64::from(ingested.escalations));
    for effect in &ingested.effects {
        let kind = match effect {
            Effect::Created(_) => "created",
            Effect::Refired(_) => "re-fired",
            Effect::Joined(_) => "joined",
            Effect::AlertResolved(_) => "alert-resolved",
            Effect::Reopened(_) => "reopened",
            Effect::Resolved(_) => "resolved",
            Effect::Stale(_) => "stale",
            Effect::Unknown => "unknown",
        };
        if let Effect::Resolved(id) = effect {
            app.pipeline.resolved(id);
        }
        app.metrics
            .alerts
            .get_or_create(&vec![
                ("source", name.to_owned()),
                ("effect", kind.to_owned()),
            ])
            .inc();
    }
    Ok((
        "accepted",
        (
            StatusCode::OK,
            axum::Json(json!({
                "status": "accepted",
                "delivery": ingested.delivery,
                "alerts": ingested.effects,
            })),
        )
            .into_response(),
    ))
}
