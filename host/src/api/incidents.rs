//! `/api/*`: incidents, actions on them, post-mortems, runbooks, reload, the pause switch.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState};
use crate::lifecycle::Transition;
use crate::postmortem;
use crate::store::{IncidentDetail, IncidentFilter, now};

/// Query string of `GET /api/incidents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    severity: Option<String>,
    /// RFC 3339, or a duration back from now (`1h`, `7d`).
    since: Option<String>,
    limit: Option<u32>,
    before: Option<String>,
}

pub(crate) fn since_ms(text: &str) -> Result<i64, ApiError> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.timestamp_millis());
    }
    let back = humantime::parse_duration(text).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("since: {text:?} is neither an RFC 3339 time nor a duration like 1h"),
        )
    })?;
    Ok(now().1 - i64::try_from(back.as_millis()).unwrap_or(i64::MAX / 2))
}

/// `GET /api/incidents`
pub async fn list(
    State(app): State<Arc<AppState>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    for (name, value, allowed) in [
        (
            "status",
            &query.status,
            &["open", "acknowledged", "mitigated", "resolved"][..],
        ),
        (
            "severity",
            &query.severity,
            &["critical", "high", "medium", "low", "info"][..],
        ),
    ] {
        if let Some(value) = value
            && !allowed.contains(&value.as_str())
        {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("{name}: {value:?} is not one of {}", allowed.join(", ")),
            ));
        }
    }
    let filter = IncidentFilter {
        status: query.status,
        severity: query.severity,
        since_ms: query.since.as_deref().map(since_ms).transpose()?,
        limit: query.limit.unwrap_or(50),
        before: query.before.clone(),
    };
    let page = app.store.list_incidents(filter).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "before: no incident {:?}; pass the `next` of the previous page, or leave \
                     it out for the first page",
                query.before.unwrap_or_default()
            ),
        )
    })?;
    Ok(Json(page).into_response())
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no incident {id}"))
}

async fn detail(app: &AppState, id: String) -> Result<IncidentDetail, ApiError> {
    app.store
        .incident_detail(id.clone())
        .await?
        .ok_or_else(|| not_found(&id))
}

/// `GET /api/incidents/{id}`
pub async fn show(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(detail(&app, id).await?).into_response())
}

/// `GET /api/incidents/{id}/postmortem`: the draft as Markdown: the one stored when the
/// incident resolved (`x-quell-draft: stored`), else rendered now (`live`).
pub async fn postmortem(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let detail = detail(&app, id).await?;
    let (text, stored) =
        postmortem::draft(&app.store, &detail, app.config.server.public_url.as_deref()).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/markdown; charset=utf-8"),
            (
                header::HeaderName::from_static("x-quell-draft"),
                if stored { "stored" } else { "live" },
            ),
        ],
        text,
    )
        .into_response())
}

/// Optional body of the incident actions.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionBody {
    /// Who is acting (shown on the timeline); default `api`.
    pub by: Option<String>,
    /// approve / reject: only this runbook's plan.
    pub runbook: Option<String>,
    /// Free text for the timeline.
    pub note: Option<String>,
}

fn body<T: Default + for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("the body: {e}")))
}

/// `POST /api/incidents/{id}/{ack,resolve,approve,reject}`
pub async fn act(
    State(app): State<Arc<AppState>>,
    Path((id, action)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let request: ActionBody = body(&bytes)?;
    let who = request.by.clone().unwrap_or_else(|| "api".to_owned());
    Ok(Json(perform(&app, id, &action, &who, request).await?).into_response())
}

/// An action on an incident, for the API and the console: `ack`, `resolve`, `approve` or
/// `reject` (only `runbook`'s plan, when named); `who` and the note go on the timeline.
pub(crate) async fn perform(
    app: &AppState,
    id: String,
    action: &str,
    who: &str,
    request: ActionBody,
) -> Result<serde_json::Value, ApiError> {
    let who: String = who.chars().filter(|c| !c.is_control()).take(100).collect();
    let note = request.note.map(|n| format!(": {n}")).unwrap_or_default();
    let exists = app
        .store
        .incident(id.clone(), String::new())
        .await?
        .is_some();
    if !exists {
        return Err(not_found(&id));
    }
    let incident = id.clone();
    let answer = match action {
        "ack" => {
            let changed = app
                .store
                .apply(Transition::Acknowledge {
                    incident,
                    message: format!("acknowledged by {who}{note}"),
                })
                .await?
                .changed;
            if !changed {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("{id} is not open, so it cannot be acknowledged"),
                ));
            }
            json!({"incident": id, "status": "acknowledged"})
        }
        "resolve" => {
            let changed = app
                .store
                .apply(Transition::Resolve {
                    incident,
                    why: format!("resolved by {who}{note}"),
                })
                .await?
                .changed;
            if !changed {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("{id} is already resolved"),
                ));
            }
            app.pipeline.resolved(&id);
            json!({"incident": id, "status": "resolved"})
        }
        "approve" | "reject" => {
            let approve = action == "approve";
            let runbook = request.runbook.clone();
            let decision = app
                .store
                .decide(incident, runbook, None, approve, who)
                .await?;
            if decision.runbooks.is_empty() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "no plan of {id}{} awaits approval (already decided, expired, or never asked)",
                        request
                            .runbook
                            .map(|r| format!(" by {r}"))
                            .unwrap_or_default()
                    ),
                ));
            }
            if !approve {
                app.metrics.escalations.inc();
            }
            json!({"incident": id, "decision": action, "runbooks": decision.runbooks})
        }
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no action {other:?}: use ack, resolve, approve or reject"),
            ));
        }
    };
    Ok(answer)
}

/// `GET /api/runbooks`
pub async fn runbooks(State(app): State<Arc<AppState>>) -> Result<Response, ApiError> {
    Ok(Json(runbooks_json(&app).await?).into_response())
}

/// The loaded runbooks with their policies and budgets, and the files that did not load.
pub(crate) async fn runbooks_json(app: &AppState) -> Result<serde_json::Value, ApiError> {
    let runbooks = app.pipeline.runbooks();
    let budgeted: Vec<(String, u32, String, i64)> = runbooks
        .loaded
        .iter()
        .filter_map(|r| {
            r.policy.runbook.max_runs.map(|b| {
                let per_ms = i64::try_from(b.per.0.as_millis()).unwrap_or(i64::MAX);
                (r.name.clone(), b.count, b.per.to_string(), per_ms)
            })
        })
        .collect();
    let used = app
        .store
        .budgets_used(
            budgeted
                .iter()
                .map(|(name, _, _, per_ms)| (name.clone(), *per_ms))
                .collect(),
        )
        .await?;
    let budgets: Vec<(String, u32, String, i64)> = budgeted
        .into_iter()
        .zip(used)
        .map(|((name, count, per, _), used)| (name, count, per, used))
        .collect();
    let loaded: Vec<_> = runbooks
        .loaded
        .iter()
        .map(|r| {
            let policy = &r.policy.runbook;
            let budget = budgets
                .iter()
                .find(|b| b.0 == r.name)
                .map(|(_, count, per, used)| json!({"count": count, "per": per, "used": used}));
            json!({
                "name": r.name,
                "digest": r.digest,
                "policy": r.policy_path,
                "mode": policy.mode.to_string(),
                "dry_run": policy.dry_run,
                "timeout": policy.timeout.to_string(),
                "description": policy.description,
                "capabilities": r.imports.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "notes": r.notes,
                "budget": budget,
            })
        })
        .collect();
    let errors: Vec<_> = runbooks
        .errors
        .iter()
        .map(|e| json!({"path": e.path, "error": e.message}))
        .collect();
    Ok(json!({"runbooks": loaded, "errors": errors}))
}

/// `POST /api/reload`: re-read runbooks and policies; a bad file keeps its last good
/// version serving and is reported.
pub async fn reload(State(app): State<Arc<AppState>>) -> Response {
    let report = app.pipeline.reload().await;
    let status = if report.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (status, Json(report)).into_response()
}

/// `GET /api/remediation`: whether remediation is paused.
pub async fn remediation(State(app): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let paused = app.store.paused().await?;
    Ok(Json(json!({"paused": paused})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    paused: bool,
    by: Option<String>,
}

/// `POST /api/remediation` with `{"paused": true|false}`: the global pause switch.
/// Diagnosis keeps running; plans wait for approval while paused.
pub async fn set_remediation(
    State(app): State<Arc<AppState>>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let request: PauseBody = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"paused\": true|false}}: {e}"),
        )
    })?;
    let paused = request.paused;
    app.store.set_paused(paused).await?;
    tracing::warn!(
        paused,
        by = request.by.as_deref().unwrap_or("api"),
        "remediation pause switch set"
    );
    Ok(Json(json!({"paused": paused})).into_response())
}

/// `GET /api/dead-letters`: deliveries that could not be used, newest first.
pub async fn dead_letters(State(app): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let letters = app.store.dead_letters(100).await?;
    Ok(Json(json!({"dead_letters": letters})).into_response())
}

/// `GET /api/notifications/dead`: notifications that exhausted their retries.
pub async fn dead_notifications(State(app): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let dead = app.store.dead_notifications(100).await?;
    Ok(Json(json!({"dead": dead})).into_response())
}
