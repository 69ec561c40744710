//! Loopback HTTP servers (axum) for the HTTP capability and the notifiers.
//!
//! [`HttpServer`] serves any router; [`TestRoutes`] is a ready-made one with a settable health
//! endpoint, redirects, large and stalled responses, an echo, and a request log. [`logged`]
//! adds a request log to any router.
//!
//! ```no_run
//! use quell_tests::http::{HttpServer, TestRoutes};
//!
//! let routes = TestRoutes::new();
//! let server = HttpServer::start("127.0.0.2".parse()?, routes.router())?;
//! routes.set_health(500);
//! let url = server.url("/health"); // http://127.0.0.2:PORT/health → 500
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde::Deserialize;
use serde_json::json;

use crate::record::{RecordedRequest, RequestLog};
use crate::serve::ServerThread;

const MIB: usize = 1 << 20;

/// A router served on `ip` with a free port from its own thread; stops when dropped.
pub struct HttpServer {
    server: ServerThread,
}

impl HttpServer {
    /// Serves `router` on `ip` (any loopback address works on Linux: `127.0.0.2`, `::1`).
    pub fn start(ip: IpAddr, router: Router) -> anyhow::Result<HttpServer> {
        let server = ServerThread::start(SocketAddr::new(ip, 0), router, "http-test-server")?;
        Ok(HttpServer { server })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://IP:PORT{path}` (IPv6 in brackets); `path` should start with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }
}

/// Wraps `router` so every request (method, path, query, headers, body) is appended to `log`.
pub fn logged(router: Router, log: RequestLog) -> Router {
    router.layer(middleware::from_fn_with_state(log, record))
}

async fn record(State(log): State<RequestLog>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 64 * MIB).await {
        Ok(body) => body,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    log.record_parts(&parts, &body);
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// Ready-made routes sharing settable state; clones share it too.
///
/// | route | answer |
/// |---|---|
/// | `GET /health` | the status set by [`set_health`](Self::set_health) (200 at first), JSON body |
/// | `GET /redirect?to=URL` | `302 Found`, `Location: URL` |
/// | `GET /big?mib=N[&content_length=true]` | N MiB (default 16) of `x`, chunked unless `content_length` |
/// | `ANY /stall` | never answers |
/// | `GET /stall-body` | `200` headers and 1 KiB of body, then never finishes the body |
/// | `ANY /echo` | `200`, JSON `{method, path, query, headers, body}` |
/// | anything else | `404` |
///
/// Every request, to any route, is recorded.
#[derive(Clone)]
pub struct TestRoutes {
    health: Arc<AtomicU16>,
    log: RequestLog,
}

impl Default for TestRoutes {
    fn default() -> Self {
        TestRoutes {
            health: Arc::new(AtomicU16::new(200)),
            log: RequestLog::default(),
        }
    }
}

#[derive(Deserialize)]
struct RedirectQuery {
    to: String,
}

#[derive(Deserialize)]
struct BigQuery {
    mib: Option<usize>,
    content_length: Option<bool>,
}

impl TestRoutes {
    /// Healthy, with an empty request log.
    pub fn new() -> TestRoutes {
        TestRoutes::default()
    }

    /// The router (with request logging) to pass to [`HttpServer::start`].
    pub fn router(&self) -> Router {
        let routes = Router::new()
            .route("/health", get(health))
            .route("/redirect", get(redirect))
            .route("/big", get(big))
            .route("/stall", any(stall))
            .route("/stall-body", get(stall_body))
            .route("/echo", any(echo))
            .route("/encoded", get(encoded))
            .with_state(self.clone());
        logged(routes, self.log.clone())
    }

    /// Sets the status `/health` answers with (e.g. 500); invalid codes answer 500.
    pub fn set_health(&self, status: u16) {
        self.health.store(status, Ordering::SeqCst);
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.log.all()
    }

    /// Forgets the requests so far.
    pub fn clear_requests(&self) {
        self.log.clear();
    }

    /// The shared request log.
    pub fn log(&self) -> RequestLog {
        self.log.clone()
    }
}

async fn health(State(routes): State<TestRoutes>) -> Response {
    let status = StatusCode::from_u16(routes.health.load(Ordering::SeqCst))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"status": if status.is_success() { "ok" } else { "unhealthy" }});
    (status, axum::Json(body)).into_response()
}

async fn redirect(Query(query): Query<RedirectQuery>) -> Response {
    match HeaderValue::from_str(&query.to) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "bad redirect target").into_response(),
    }
}

async fn big(Query(query): Query<BigQuery>) -> Response {
    let total = query.mib.unwrap_or(16) * MIB;
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let chunks = (0..total.div_ceil(chunk.len())).map(move |i| {
        let len = chunk.len().min(total - i * chunk.len());
        Ok::<_, Infallible>(chunk.slice(..len))
    });
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if query.content_length == Some(true) {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    }
    response
}

async fn stall() -> Response {
    std::future::pending::<Response>().await
}

async fn stall_body() -> Response {
    use futures_util::StreamExt as _;
    let first =
        futures_util::stream::once(async { Ok::<_, Infallible>(Bytes::from(vec![b'x'; 1024])) });
    let never = futures_util::stream::pending::<Result<Bytes, Infallible>>();
    (StatusCode::OK, Body::from_stream(first.chain(never))).into_response()
}

/// A body the server says is gzip-encoded, whatever the client asked for.
async fn encoded() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"))],
        vec![0x1f_u8, 0x8b, 0x08, 0x00],
    )
        .into_response()
}

async fn echo(request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 * MIB)
        .await
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
        .collect::<Vec<_>>();
    axum::Json(json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
    .into_response()
}
