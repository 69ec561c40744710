//! The web console at `/`: server-rendered pages (maud) over the same store and actions as
//! the API, for on-call in a browser. Sign in with an API token (exchanged for a session
//! cookie); operators act, viewers read; every POST carries the session's CSRF token; a strict
//! Content-Security-Policy allows no inline script or style. With no token configured at all
//! (a loopback development daemon, as the API) every visitor is an operator.

mod pages;
pub mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::Markup;
use serde::Deserialize;

use crate::api::{ApiError, AppState};
use session::{Role, Session};

/// The console's routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(incidents))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/incidents/{id}", get(incident))
        .route("/incidents/{id}/{action}", post(act))
        .route("/runbooks", get(runbooks))
        .route("/remediation", post(remediation))
        .route("/dead", get(dead))
        .route(
            "/console.css",
            get(|| asset("text/css", include_str!("console/console.css"))),
        )
        .route(
            "/console.js",
            get(|| asset("text/javascript", include_str!("console/console.js"))),
        )
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    secured(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

fn page(markup: Markup) -> Response {
    secured(Html(markup.into_string()).into_response())
}

fn open(app: &AppState) -> bool {
    app.config.auth.api_tokens.is_empty() && app.config.auth.viewer_tokens.is_empty()
}

fn secure_cookie(app: &AppState) -> bool {
    app.config
        .server
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"))
}

/// The request's session; on an open daemon, a new operator session (with its cookie).
fn session(
    app: &AppState,
    headers: &HeaderMap,
) -> Result<(Session, Option<String>), Box<Response>> {
    if let Some(session) = app.sessions.of(headers) {
        return Ok((session, None));
    }
    if open(app) {
        let id = app.sessions.start(Role::Operator);
        let session = app.sessions.of(&cookie_header(&id)).ok_or_else(|| {
            Box::new(
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "session lost").into_response(),
            )
        })?;
        return Ok((session, Some(id)));
    }
    Err(Box::new(Redirect::to("/login").into_response()))
}

fn cookie_header(id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&format!("{}={id}", session::COOKIE)) {
        headers.insert(header::COOKIE, value);
    }
    headers
}

fn with_cookie(app: &AppState, mut response: Response, new: Option<String>) -> Response {
    if let Some(id) = new
        && let Ok(value) = HeaderValue::from_str(&session::set_cookie(&id, secure_cookie(app)))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn refused(status: StatusCode, why: &str) -> Response {
    secured((status, why.to_owned()).into_response())
}

async fn login_page() -> Response {
    page(pages::layout("Sign in", None, pages::login(None)))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(app): State<Arc<AppState>>, form: axum::Form<LoginForm>) -> Response {
    let auth = &app.config.auth;
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&format!("Bearer {}", form.token)) {
        headers.insert(header::AUTHORIZATION, value);
    }
    let role = match crate::api::auth::role(&headers, auth) {
        Some(role) => role,
        None if open(&app) => Role::Operator,
        None => {
            tracing::warn!("console sign-in refused: unknown token");
            let markup = pages::layout(
                "Sign in",
                None,
                pages::login(Some(
                    "That token is not one of [auth] api_tokens or viewer_tokens.",
                )),
            );
            let mut response = page(markup);
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            return response;
        }
    };
    let id = app.sessions.start(role);
    with_cookie(&app, Redirect::to("/").into_response(), Some(id))
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
    runbook: Option<String>,
    paused: Option<String>,
}

/// The session of a POST whose form carries its CSRF token, of a role that may act.
fn acting(app: &AppState, headers: &HeaderMap, form: &CsrfForm) -> Result<Session, Box<Response>> {
    let Some(session) = app.sessions.of(headers) else {
        return Err(Box::new(refused(
            StatusCode::FORBIDDEN,
            "not signed in (or the session ended): sign in again",
        )));
    };
    if !form.csrf.as_deref().is_some_and(|t| session.csrf_ok(t)) {
        return Err(Box::new(refused(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or wrong: reload the page and try again",
        )));
    }
    if session.role != Role::Operator {
        return Err(Box::new(refused(
            StatusCode::FORBIDDEN,
            "a viewer may only read: this needs an operator token ([auth] api_tokens)",
        )));
    }
    Ok(session)
}

async fn logout(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    form: axum::Form<CsrfForm>,
) -> Response {
    if let Some(session) = app.sessions.of(&headers)
        && form.csrf.as_deref().is_some_and(|t| session.csrf_ok(t))
    {
        app.sessions.end(&headers);
    }
    let mut response = Redirect::to("/login").into_response();
    if let Ok(value) = HeaderValue::from_str(&session::clear_cookie()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    severity: Option<String>,
    since: Option<String>,
    before: Option<String>,
    fragment: Option<String>,
}

async fn incidents(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let (session, new) = match session(&app, &headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let (status, severity) = (nonempty(query.status), nonempty(query.severity));
    let since = nonempty(query.since);
    let since_ms = match since
        .as_deref()
        .map(crate::api::incidents::since_ms)
        .transpose()
    {
        Ok(ms) => ms,
        Err(e) => return e.into_response(),
    };
    let filter = crate::store::IncidentFilter {
        status: status.clone(),
        severity: severity.clone(),
        since_ms,
        limit: 50,
        before: nonempty(query.before),
    };
    let (list, next) = match app.store.list_incidents(filter).await {
        Ok(page) => page.map(|p| (p.incidents, p.next)).unwrap_or_default(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let table = pages::incidents_table(&list);
    let response = if query.fragment.is_some() {
        page(table)
    } else {
        // The filters again, for the next page's link (the same cursor as the API's).
        let kept: String = [
            ("status", &status),
            ("severity", &severity),
            ("since", &since),
        ]
        .iter()
        .filter_map(|(k, v)| {
            v.as_ref().map(|v| {
                format!(
                    "{k}={}&",
                    url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                )
            })
        })
        .collect();
        let body = maud::html! {
            (pages::filters(status.as_deref(), severity.as_deref(), since.as_deref()))
            (table)
            (pages::older(next.as_deref(), &kept))
        };
        page(pages::layout(
            "Incidents",
            Some((session.role, &session.csrf)),
            body,
        ))
    };
    with_cookie(&app, response, new)
}

async fn incident(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (session, new) = match session(&app, &headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let detail = match app.store.incident_detail(id.clone()).await {
        Ok(Some(detail)) => detail,
        Ok(None) => return refused(StatusCode::NOT_FOUND, &format!("no incident {id}")),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let public_url = app.config.server.public_url.as_deref();
    let draft = match crate::postmortem::draft(&app.store, &detail, public_url).await {
        Ok((draft, _)) => draft,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let title = format!("{} — {}", detail.incident.id, detail.incident.title);
    let body = pages::incident(&detail, session.role, &session.csrf, &draft);
    with_cookie(
        &app,
        page(pages::layout(
            &title,
            Some((session.role, &session.csrf)),
            body,
        )),
        new,
    )
}

async fn act(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    form: axum::Form<CsrfForm>,
) -> Response {
    if let Err(response) = acting(&app, &headers, &form) {
        return *response;
    }
    let request = crate::api::incidents::ActionBody {
        by: None,
        runbook: form.runbook.clone(),
        note: None,
    };
    match crate::api::incidents::perform(&app, id.clone(), &action, "console", request).await {
        Ok(_) => Redirect::to(&format!("/incidents/{id}")).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn runbooks(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (session, new) = match session(&app, &headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let listed = match crate::api::incidents::runbooks_json(&app).await {
        Ok(listed) => listed,
        Err(e) => return e.into_response(),
    };
    let (runs, paused) = match (app.store.recent_runs(200).await, app.store.paused().await) {
        (Ok(runs), Ok(paused)) => (runs, paused),
        (Err(e), _) | (_, Err(e)) => return ApiError::from(e).into_response(),
    };
    let body = pages::runbooks(&listed, &runs, paused, session.role, &session.csrf);
    with_cookie(
        &app,
        page(pages::layout(
            "Runbooks",
            Some((session.role, &session.csrf)),
            body,
        )),
        new,
    )
}

async fn remediation(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    form: axum::Form<CsrfForm>,
) -> Response {
    if let Err(response) = acting(&app, &headers, &form) {
        return *response;
    }
    let paused = form.paused.as_deref() == Some("true");
    match app.store.set_paused(paused).await {
        Ok(()) => Redirect::to("/runbooks").into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn dead(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (session, new) = match session(&app, &headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let (letters, notifications) = match (
        app.store.dead_letters(100).await,
        app.store.dead_notifications(100).await,
    ) {
        (Ok(l), Ok(n)) => (
            serde_json::to_value(l).unwrap_or_default(),
            serde_json::to_value(n).unwrap_or_default(),
        ),
        (Err(e), _) | (_, Err(e)) => return ApiError::from(e).into_response(),
    };
    let body = pages::dead(&letters, &notifications);
    with_cookie(
        &app,
        page(pages::layout(
            "Dead letters",
            Some((session.role, &session.csrf)),
            body,
        )),
        new,
    )
}
