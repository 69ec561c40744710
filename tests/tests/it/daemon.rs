//! `quell serve` in-process on 127.0.0.1:0 with a real SQLite file, driven over real HTTP:
//! deduplication, episodes, every webhook status code, approvals, the pause switch, run
//! budgets, hot reload, metrics and post-mortems.

use std::time::{Duration, Instant};

use quell::config::{ByteSize, HumanDuration};
use quell::daemon::Daemon;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::Env;

/// A probe runbook policy (the probe imports every capability, so each is granted a little).
fn probe_policy(mode: &str, extra: &str) -> String {
    format!(
        "mode = \"{mode}\"\ntimeout = \"30s\"\n{extra}\n\
         [[kubectl.allow]]\nverbs = [\"get\"]\nresources = [\"pods\"]\nnamespaces = [\"production\"]\n\
         [ssh]\nuser = \"root\"\nhosts = [\"127.0.0.1\"]\n\
         [ssh.commands]\ntouch = {{ run = \"true\", effect = \"write\" }}\n\
         [http]\nnetworks = [\"127.0.0.0/8\"]\n\
         [[http.allow]]\nmethods = [\"GET\"]\nurls = [\"http://127.0.0.1:*/**\"]\n"
    )
}

pub struct Running {
    pub env: Env,
    pub daemon: Option<Daemon>,
    pub client: reqwest::Client,
    pub base: String,
}

/// Configures `env` for a daemon whose runbooks are the policies written into its dir.
pub fn daemon_config(env: &mut Env) {
    let dir = env.dir.path().to_owned();
    env.config.server.listen = "127.0.0.1:0".parse().unwrap();
    env.config.database.path = dir.join("db/quell.db");
    env.config.runbooks.dir = dir.clone();
    env.config.postmortems.dir = dir.join("postmortems");
    env.config.pipeline.workers = 2;
}

impl Running {
    pub async fn start(mut env: Env) -> Running {
        daemon_config(&mut env);
        Self::start_configured(env).await
    }

    pub async fn start_configured(env: Env) -> Running {
        let daemon = Daemon::start(env.config.clone())
            .await
            .expect("daemon starts");
        let base = format!("http://{}", daemon.addr());
        Running {
            env,
            daemon: Some(daemon),
            client: reqwest::Client::new(),
            base,
        }
    }

    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The incident's post-mortem draft and whether it was served as stored at resolution
    /// (`x-quell-draft: stored`) or rendered now (`live`).
    pub async fn draft(&self, id: &str) -> (String, String) {
        let response = self
            .client
            .get(format!("{}/api/incidents/{id}/postmortem", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let kind = response.headers()["x-quell-draft"]
            .to_str()
            .unwrap()
            .to_owned();
        (kind, response.text().await.unwrap())
    }

    pub async fn incidents(&self) -> Vec<Value> {
        let (status, page) = self.get("/api/incidents?limit=500").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["incidents"].as_array().unwrap().clone()
    }

    pub async fn incident(&self, id: &str) -> Value {
        let (status, detail) = self.get(&format!("/api/incidents/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{detail}");
        detail
    }

    /// The incident, read with bearer `token`.
    pub async fn incident_with(&self, id: &str, token: &str) -> Value {
        self.client
            .get(format!("{}/api/incidents/{id}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Polls the incident until `done` holds (a minute at most: a hang guard, not a timing).
    pub async fn wait_for(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let detail = self.incident(id).await;
            if done(&detail) {
                return detail;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {detail:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs one statement with `?1` bound to `id` on the daemon's database behind its back
    /// (a test's way to age a row); the rows it changed.
    pub fn db_exec(&self, sql: &str, id: &str) -> usize {
        match &self.env.postgres {
            Some(server) => {
                let sql = sql.replace("?1", &format!("'{}'", id.replace('\'', "''")));
                let count = server
                    .psql(&format!(
                        "WITH changed AS ({sql} RETURNING 1) SELECT count(*) FROM changed"
                    ))
                    .unwrap();
                count.trim().parse().unwrap()
            }
            None => {
                let db = rusqlite::Connection::open(&self.env.config.database.path).unwrap();
                db.busy_timeout(Duration::from_secs(5)).unwrap();
                db.execute(sql, [id]).unwrap()
            }
        }
    }

    pub async fn stop(mut self) -> Env {
        if let Some(daemon) = self.daemon.take() {
            daemon.shutdown().await.unwrap();
        }
        self.env
    }
}

/// Event kinds on the timeline, in order.
pub fn kinds(detail: &Value) -> Vec<String> {
    detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// The phases of the incident's runs, in order.
pub fn phases(detail: &Value) -> Vec<String> {
    detail["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["phase"].as_str().unwrap().to_owned())
        .collect()
}

fn job_states(detail: &Value) -> Vec<String> {
    detail["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["state"].as_str().unwrap().to_owned())
        .collect()
}

fn settled(detail: &Value) -> bool {
    job_states(detail)
        .iter()
        .all(|s| !matches!(s.as_str(), "queued" | "running"))
}

/// An Alertmanager v4 payload with one alert.
pub fn payload(status: &str, fingerprint: &str, starts_at: &str, annotations: Value) -> String {
    json!({
        "receiver": "quell", "status": status, "version": "4",
        "groupKey": "{}:{alertname=\"Probe\"}", "truncatedAlerts": 0,
        "groupLabels": {"alertname": "Probe"}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": status,
            "labels": {"alertname": "Probe", "severity": "critical", "service": fingerprint},
            "annotations": annotations,
            "startsAt": starts_at,
            "endsAt": if status == "resolved" { "2026-11-24T04:00:00Z" } else { "0001-01-01T00:00:00Z" },
            "generatorURL": "http://prometheus/graph",
            "fingerprint": fingerprint,
        }],
    })
    .to_string()
}

fn firing(fingerprint: &str) -> String {
    payload(
        "firing",
        fingerprint,
        "2026-11-24T03:00:00.51Z",
        json!({"summary": "probe fired"}),
    )
}

async fn created(app: &Running, body: String) -> String {
    let (status, answer) = app.post("/webhooks/alertmanager", body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["alerts"][0]["incident"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_webhook_status_code_says_what_is_wrong() {
    let mut env = Env::new();
    env.config.sources.alertmanager.tokens = vec!["old".to_owned(), "new".to_owned()];
    env.config.sources.alertmanager.body_limit = ByteSize(4096);
    env.config.database.busy_timeout = HumanDuration(Duration::from_millis(200));
    let app = Running::start(env).await;
    let url = format!("{}/webhooks/alertmanager", app.base);
    let send = |token: Option<&str>, body: String| {
        let mut request = app
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let retry = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: Value = response.json().await.unwrap();
            (status, body, retry)
        }
    };

    let (status, body, _) = send(None, firing("codes")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "missing or invalid credentials");
    let (status, _, _) = send(Some("wrong"), firing("codes")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body, _) = send(Some("new"), "{\"alerts\": [".to_owned()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = body["error"].as_str().unwrap();
    assert!(
        message.starts_with(
            "expected a JSON body (content-type: application/json): the body is not valid \
             JSON: EOF while parsing"
        ),
        "{message}"
    );
    assert!(message.contains("line 1 column 12"), "{message}");

    let (status, body, _) = send(Some("old"), " ".repeat(5000)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("4.0 KiB limit of /webhooks/alertmanager"),
        "{body}"
    );

    let (status, body, _) = send(Some("old"), "{\"text\": \"a custom template\"}".to_owned()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["status"], "dead-letter");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no \"alerts\" array")
    );
    let (_, letters) = app.get("/api/dead-letters").await;
    assert_eq!(
        letters["dead_letters"][0]["body"],
        "{\"text\": \"a custom template\"}"
    );

    // Another process holds the database's write lock past the busy timeout.
    let (status, _, _) = send(Some("old"), firing("kept")).await;
    assert_eq!(status, StatusCode::OK);
    let locker = rusqlite::Connection::open(&app.env.config.database.path).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (status, body, retry) = send(Some("old"), firing("refused")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(retry.as_deref(), Some("5"));
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("the database is unavailable: "),
        "{body}"
    );
    locker.execute_batch("COMMIT").unwrap();
    // It keeps serving, and nothing acknowledged was lost.
    let (status, _, _) = send(Some("old"), firing("after")).await;
    assert_eq!(status, StatusCode::OK);
    let fingerprints: Vec<String> = app
        .incidents()
        .await
        .iter()
        .map(|i| i["fingerprint"].as_str().unwrap().to_owned())
        .collect();
    assert!(fingerprints.contains(&"kept".to_owned()));
    assert!(fingerprints.contains(&"after".to_owned()));
    assert!(!fingerprints.contains(&"refused".to_owned()));

    let (_, metrics) = app.get("/metrics").await;
    let metrics = metrics.as_str().unwrap().to_owned();
    for line in [
        "quell_deliveries_total{source=\"alertmanager\",outcome=\"unauthorized\"} 2",
        "quell_deliveries_total{source=\"alertmanager\",outcome=\"malformed\"} 1",
        "quell_deliveries_total{source=\"alertmanager\",outcome=\"too_large\"} 1",
        "quell_deliveries_total{source=\"alertmanager\",outcome=\"dead_letter\"} 1",
        "quell_deliveries_total{source=\"alertmanager\",outcome=\"unavailable\"} 1",
        "quell_dead_letters 1",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_policy_on_reload_is_refused_and_the_last_good_version_serves() {
    let env = Env::new();
    let policy = env.policy("probe", "probe", &probe_policy("diagnose", ""));
    let app = Running::start(env).await;
    let (_, before) = app.get("/api/runbooks").await;
    let digest = before["runbooks"][0]["digest"].clone();

    std::fs::write(&policy, "[runbook]\nname = \"probe\"\nmode = \"yolo\"\n").unwrap();
    let (status, report) = app.post("/api/reload", "").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{report}");
    let error = report["errors"][0].as_str().unwrap();
    assert!(error.contains("policy.toml"), "{error}");
    assert!(error.contains("line 3"), "{error}");
    let (_, after) = app.get("/api/runbooks").await;
    assert_eq!(after["runbooks"][0]["digest"], digest, "{after:#}");
    assert!(
        after["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("line 3")
    );

    // Still serving with the old version.
    let id = created(&app, firing("reload")).await;
    let detail = app.wait_for(&id, "the run", settled).await;
    assert_eq!(detail["runs"][0]["outcome"], "diagnosed");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_trickling_its_headers_is_cut_off_and_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut env = Env::new();
    daemon_config(&mut env);
    env.config.server.header_read_timeout = HumanDuration(Duration::from_secs(1));
    let app = Running::start_configured(env).await;
    let mut slow = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    slow.write_all(b"POST /webhooks/alertmanager HTTP/1.1\r\nHost: quell\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buffer = [0u8; 512];
    // One more header byte every 200 ms, never the blank line that ends the head.
    let closed = loop {
        tokio::select! {
            read = slow.read(&mut buffer) => break read,
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if slow.write_all(b"X").await.is_err() {
                    break Ok(0);
                }
            }
        }
        // A hang guard (the limit is 1 s): without the timeout the trickle never ends.
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the connection is still open after 60 s of trickled headers"
        );
    };
    // Closed, or answered with an error and then closed: never a request handled.
    match closed {
        Ok(0) | Err(_) => {}
        Ok(n) => {
            let head = String::from_utf8_lossy(&buffer[..n]);
            assert!(head.starts_with("HTTP/1.1 408"), "{head}");
        }
    }
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::OK, "the daemon keeps serving");
    app.stop().await;
}

/// Opens a webhook request whose body never finishes arriving; it holds a request slot
/// until the daemon's request_timeout or until the connection closes.
async fn trickle(app: &Running) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut slow = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    slow.write_all(
        b"POST /webhooks/alertmanager HTTP/1.1\r\nHost: quell\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"receiver\":",
    )
    .await
    .unwrap();
    slow
}

/// Polls `/api/incidents` until it answers `status` (an event, not a timing: the loop ends
/// when the daemon's state has changed, whatever the machine's speed).
async fn poll_until(app: &Running, status: StatusCode, what: &str) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = app
            .client
            .get(format!("{}/api/incidents", app.base))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap();
        if response.status() == status {
            return response;
        }
        assert!(Instant::now() < deadline, "{what}: {}", response.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Trickles a request until it holds the daemon's only slot, and returns it with the answer
/// that proved it: a request shed while it held the slot. The trickled request and the
/// first polls race for the slot; when a poll wins, the trickle is the one shed (answered
/// at once), and a new one is opened. Ends on events, never on a timer.
async fn hold_the_only_slot(app: &Running) -> (tokio::net::TcpStream, reqwest::Response) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut slow = trickle(app).await;
    loop {
        let response = app
            .client
            .get(format!("{}/api/incidents", app.base))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            return (slow, response);
        }
        // Any answer (or a close) on the trickled connection means it lost the race.
        let mut peek = [0u8; 64];
        match slow.try_read(&mut peek) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => slow = trickle(app).await,
        }
        assert!(
            Instant::now() < deadline,
            "never shed: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_beyond_the_limit_are_shed_until_a_slot_comes_back() {
    let mut env = Env::new();
    daemon_config(&mut env);
    env.config.server.max_concurrent_requests = 1;
    // The slot is held until the test lets go of it, never by a timer racing the test.
    env.config.server.request_timeout = HumanDuration(Duration::from_secs(3600));
    let app = Running::start_configured(env).await;
    let (slow, shed) = hold_the_only_slot(&app).await;
    assert_eq!(shed.headers()["retry-after"], "1");
    let body: Value = shed.json().await.unwrap();
    assert_eq!(
        body["error"],
        "quell is serving its limit of 1 requests ([server] max_concurrent_requests); retry shortly"
    );
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::OK, "health is never shed");
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);

    // The client gives up: its slot comes back.
    drop(slow);
    poll_until(&app, StatusCode::OK, "the slot never came back").await;
    let (_, metrics) = app.get("/metrics").await;
    let shed_total: f64 = metrics
        .as_str()
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("quell_requests_shed_total "))
        .expect("the shed counter is exported")
        .parse()
        .unwrap();
    assert!(shed_total >= 1.0, "{shed_total}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trickled_body_is_cut_off_at_the_request_timeout() {
    let mut env = Env::new();
    daemon_config(&mut env);
    env.config.server.request_timeout = HumanDuration(Duration::from_secs(2));
    let app = Running::start_configured(env).await;
    let mut slow = trickle(&app).await;
    let mut answer = String::new();
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::io::AsyncReadExt::read_to_string(&mut slow, &mut answer),
    )
    .await
    .expect("the slow request is answered")
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("the request took longer than 2s ([server] request_timeout)"),
        "{answer}"
    );
    let (status, _) = app.get("/api/incidents").await;
    assert_eq!(status, StatusCode::OK, "the daemon keeps serving");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn api_tokens_guard_the_api_but_not_health() {
    let mut env = Env::new();
    env.config.auth.api_tokens = vec!["api-secret".to_owned()];
    let app = Running::start(env).await;
    let (status, _) = app.get("/api/incidents").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let response = app
        .client
        .get(format!("{}/api/incidents", app.base))
        .bearer_auth("api-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(app.get("/readyz").await.0, StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_token_reads_and_only_an_operator_token_acts() {
    let mut env = Env::new();
    env.config.auth.api_tokens = vec!["operator-secret".to_owned()];
    env.config.auth.viewer_tokens = vec!["viewer-secret".to_owned()];
    let app = Running::start(env).await;
    let id = created(&app, firing("roles")).await;
    let call = |method: reqwest::Method, path: &str, token: &str| {
        app.client
            .request(method, format!("{}{path}", app.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body("{}")
            .send()
    };
    // Reading: both roles.
    for token in ["viewer-secret", "operator-secret"] {
        let response = call(reqwest::Method::GET, &format!("/api/incidents/{id}"), token)
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{token}");
    }
    // Acting: a viewer is refused, and told why; nothing changed.
    for path in [
        format!("/api/incidents/{id}/ack"),
        "/api/remediation".to_owned(),
        "/api/reload".to_owned(),
    ] {
        let response = call(reqwest::Method::POST, &path, "viewer-secret")
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("needs an operator token ([auth] api_tokens)"),
            "{body}"
        );
    }
    let detail: Value = call(
        reqwest::Method::GET,
        &format!("/api/incidents/{id}"),
        "viewer-secret",
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(detail["status"], "open", "a refused action changes nothing");
    let response = call(
        reqwest::Method::POST,
        &format!("/api/incidents/{id}/ack"),
        "operator-secret",
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = call(reqwest::Method::GET, "/api/incidents", "not-a-token")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[test]
fn serving_off_loopback_without_credentials_is_refused() {
    let mut env = Env::new();
    daemon_config(&mut env);
    env.config.server.listen = "0.0.0.0:0".parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let error = runtime
        .block_on(Daemon::start(env.config.clone()))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("without credentials: set [auth] api_tokens"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_that_loses_its_database_answers_503_and_recovers_without_a_restart() {
    let env = crate::harness::OnPostgres::new();
    env.policy("probe", "probe", &probe_policy("diagnose", ""));
    let app = Running::start(env).await;
    let before = created(&app, firing("before")).await;
    let server = app.env.postgres.clone().unwrap();

    server.stop().unwrap();
    let (status, answer) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::OK, "alive, only not ready");
    // Nothing is acknowledged that was not committed: the sender is told to retry.
    let (status, answer) = app.post("/webhooks/alertmanager", firing("during")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");

    server.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while app.get("/readyz").await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "ready again without a restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The sender's retry is taken now, and what was acknowledged before is all there.
    let during = created(&app, firing("during")).await;
    assert_ne!(during, before);
    app.wait_for(&before, "the first incident's diagnosis", |d| {
        d["runs"].as_array().is_some_and(|runs| !runs.is_empty())
    })
    .await;
    app.wait_for(&during, "the retried alert's diagnosis", |d| {
        d["runs"].as_array().is_some_and(|runs| !runs.is_empty())
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_replica_serves_the_post_mortem_stored_when_an_incident_resolved() {
    let mut env = crate::harness::OnPostgres::new();
    env.policy("probe", "probe", &probe_policy("diagnose", ""));
    daemon_config(&mut env);
    // Replicas share no disk: drafts live in the database only.
    env.config.postmortems.files = false;
    let other = Env {
        dir: tempfile::tempdir().unwrap(),
        config: env.config.clone(),
        postgres: env.postgres.clone(),
    };
    let (one, two) = (
        Running::start_configured(env).await,
        Running::start_configured(other).await,
    );
    let id = created(&one, firing("pm")).await;
    one.wait_for(&id, "the diagnosis", |d| {
        settled(d) && !d["runs"].as_array().unwrap().is_empty()
    })
    .await;
    let resolved = payload("resolved", "pm", "2026-11-24T03:00:00.51Z", json!({}));
    let (status, answer) = one.post("/webhooks/alertmanager", resolved).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // The replica that did not resolve it serves the draft the other one stored.
    let deadline = Instant::now() + Duration::from_secs(60);
    let draft = loop {
        let (kind, draft) = two.draft(&id).await;
        if kind == "stored" {
            break draft;
        }
        assert!(Instant::now() < deadline, "no stored draft: {draft}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for part in [
        &format!("# Post-Mortem: {id}"),
        "## Diagnosis",
        "| resolved |",
    ] {
        assert!(draft.contains(part), "missing {part:?} in:\n{draft}");
    }
    assert_eq!(one.draft(&id).await, ("stored".to_owned(), draft));
    let dir = one.env.config.postmortems.dir.clone();
    assert!(!dir.exists(), "no file written: {}", dir.display());
    one.stop().await;
    two.stop().await;
}

// Shared behaviour: each runs on SQLite and on a real PostgreSQL server.
crate::harness::on_both_backends! {
    async fn five_concurrent_deliveries_make_one_incident_and_one_run() {
        let env = Env::new();
        env.policy("probe", "probe", &probe_policy("diagnose", ""));
        let app = Running::start(env).await;
        let body = firing("a1");
        let sends = (0..5).map(|_| app.post("/webhooks/alertmanager", body.clone()));
        let answers = futures_util::future::join_all(sends).await;
        let mut actions: Vec<String> = answers
            .iter()
            .map(|(status, answer)| {
                assert_eq!(*status, StatusCode::OK, "{answer}");
                answer["alerts"][0]["action"].as_str().unwrap().to_owned()
            })
            .collect();
        actions.sort();
        assert_eq!(
            actions,
            ["created", "re-fired", "re-fired", "re-fired", "re-fired"]
        );

        let incidents = app.incidents().await;
        assert_eq!(incidents.len(), 1, "{incidents:#?}");
        let id = incidents[0]["id"].as_str().unwrap();
        assert_eq!(incidents[0]["fired"], 5);
        let detail = app.wait_for(id, "the diagnosis", settled).await;
        let runs = detail["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1, "one run for five deliveries: {detail:#}");
        assert_eq!(runs[0]["outcome"], "diagnosed");
        assert_eq!(
            kinds(&detail).iter().filter(|k| *k == "re-fired").count(),
            4
        );
        // Mode diagnose: the findings go to a human.
        assert!(kinds(&detail).contains(&"escalated".to_owned()));
        app.stop().await;
    }

    async fn firing_firing_resolved_firing_makes_two_episodes() {
        let mut env = Env::new();
        env.policy("probe", "probe", &probe_policy("diagnose", ""));
        // Reopening is off: a new startsAt after resolution is a new incident.
        env.config.pipeline.reopen_window = HumanDuration(Duration::ZERO);
        let app = Running::start(env).await;
        let first = created(&app, firing("ep")).await;
        let again = app.post("/webhooks/alertmanager", firing("ep")).await;
        assert_eq!(
            again.1["alerts"][0],
            json!({"action": "re-fired", "incident": first})
        );
        // Let the runbook diagnose it first, so the post-mortem has a diagnosis.
        app.wait_for(&first, "the diagnosis", |d| {
            settled(d) && !d["runs"].as_array().unwrap().is_empty()
        })
        .await;
        let resolved = payload("resolved", "ep", "2026-11-24T03:00:00.51Z", json!({}));
        let answer = app.post("/webhooks/alertmanager", resolved.clone()).await;
        assert_eq!(
            answer.1["alerts"][0],
            json!({"action": "resolved", "incident": first})
        );
        // A duplicate resolved changes nothing.
        let answer = app.post("/webhooks/alertmanager", resolved).await;
        assert_eq!(answer.1["alerts"][0]["action"], "stale");
        let next = payload(
            "firing",
            "ep",
            "2026-11-24T05:00:00Z",
            json!({"summary": "again"}),
        );
        let second = created(&app, next).await;
        assert_ne!(
            first, second,
            "a new startsAt after resolution opens a new episode"
        );
        // A late re-send of the first episode's firing alert does not reopen it.
        let late = app.post("/webhooks/alertmanager", firing("ep")).await;
        assert_eq!(late.1["alerts"][0]["action"], "re-fired");
        assert_eq!(late.1["alerts"][0]["incident"], second.as_str());

        let one = app.incident(&first).await;
        assert_eq!(one["status"], "resolved");
        let timeline = kinds(&one);
        let at = |kind: &str| timeline.iter().position(|k| k == kind).unwrap();
        assert!(
            at("created") < at("re-fired") && at("re-fired") < at("resolved"),
            "{timeline:?}"
        );
        assert_eq!(timeline.last().unwrap(), "resolved", "{timeline:?}");
        let two = app.incident(&second).await;
        assert_eq!(two["status"], "open");
        assert_eq!(two["title"], "again");
        assert_eq!(app.incidents().await.len(), 2);
        // The post-mortem draft of the resolved episode is written to the configured dir.
        let dir = app.env.dir.path().join("postmortems");
        let deadline = Instant::now() + Duration::from_secs(60);
        let draft = loop {
            // Only the finished file: the draft is written to a temporary name and renamed.
            let found = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .find(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.contains(&first) && name.ends_with(".md")
                });
            if let Some(entry) = found {
                break std::fs::read_to_string(entry.path()).unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "no post-mortem in {}",
                dir.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        for section in [
            &format!("# Post-Mortem: {first}"),
            "## Summary",
            "## Timeline",
            "## Diagnosis",
            "### probe (sha256",
            "mode diagnose",
            "## Root Cause",
            "## What Went Well",
            "## Action Items",
            "| resolved | the alert resolved |",
        ] {
            assert!(draft.contains(section), "missing {section:?} in:\n{draft}");
        }
        // The API serves the same draft, kept in the database at resolution; the open
        // episode's is rendered as it stands.
        assert_eq!(app.draft(&first).await, ("stored".to_owned(), draft));
        assert_eq!(app.draft(&second).await.0, "live");
        app.stop().await;
    }

    async fn a_resolution_keeps_when_the_sender_says_it_ended_beside_when_it_arrived() {
        let app = Running::start(Env::new()).await;
        let id = created(&app, firing("ended")).await;
        let resolved = payload("resolved", "ended", "2026-11-24T03:00:00.51Z", json!({}));
        let (status, _) = app.post("/webhooks/alertmanager", resolved).await;
        assert_eq!(status, StatusCode::OK);
        let detail = app.incident(&id).await;
        assert_eq!(detail["ended_at"], "2026-11-24T04:00:00.000Z", "{detail}");
        assert_ne!(
            detail["resolved_at"], detail["ended_at"],
            "the arrival is kept beside it"
        );
        let (_, markdown) = app.get(&format!("/api/incidents/{id}/postmortem")).await;
        let markdown = markdown.as_str().unwrap();
        assert!(
            markdown.contains("- **Duration:** 60 minutes"),
            "{markdown}"
        );
        assert!(
            markdown.contains("- **Ended (as the sender says):** 2026-11-24T04:00:00.000Z"),
            "{markdown}"
        );
        app.stop().await;
    }

    async fn a_flapping_alert_reopens_its_incident_within_the_window() {
        let env = Env::new();
        let app = Running::start(env).await;
        let first = created(&app, firing("flap")).await;
        let resolved = payload("resolved", "flap", "2026-11-24T03:00:00.51Z", json!({}));
        app.post("/webhooks/alertmanager", resolved).await;
        let next = payload("firing", "flap", "2026-11-24T03:10:00Z", json!({}));
        let (_, answer) = app.post("/webhooks/alertmanager", next).await;
        assert_eq!(
            answer["alerts"][0],
            json!({"action": "reopened", "incident": first})
        );
        let detail = app.incident(&first).await;
        assert_eq!(detail["status"], "open");
        assert!(kinds(&detail).contains(&"reopened".to_owned()));
        assert_eq!(app.incidents().await.len(), 1);
        // It resolves again; a late re-send of the episode that reopened it changes nothing.
        let resolved = payload("resolved", "flap", "2026-11-24T03:10:00Z", json!({}));
        let (_, answer) = app.post("/webhooks/alertmanager", resolved).await;
        assert_eq!(answer["alerts"][0]["action"], "resolved");
        let late = payload("firing", "flap", "2026-11-24T03:10:00Z", json!({}));
        let (_, answer) = app.post("/webhooks/alertmanager", late).await;
        assert_eq!(
            answer["alerts"][0],
            json!({"action": "stale", "incident": first})
        );
        assert_eq!(app.incident(&first).await["status"], "resolved");
        assert_eq!(app.incidents().await.len(), 1);
        app.stop().await;
    }

    async fn approval_runs_the_plan_once_and_unapproved_plans_expire() {
        let mut env = Env::new();
        env.policy("probe", "probe", &probe_policy("approve", ""));
        // Long enough that no click races the expiry; the expiry case moves its own deadline.
        env.config.pipeline.approval_timeout = HumanDuration(Duration::from_secs(3600));
        let app = Running::start(env).await;

        let id = created(&app, firing("approve")).await;
        app.wait_for(&id, "the plan to await approval", |d| {
            job_states(d) == ["awaiting_approval"]
        })
        .await;
        let (status, answer) = app
            .post(
                &format!("/api/incidents/{id}/approve"),
                r#"{"by": "alice"}"#,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["runbooks"], json!(["probe"]));
        let (status, answer) = app.post(&format!("/api/incidents/{id}/approve"), "").await;
        assert_eq!(
            status,
            StatusCode::CONFLICT,
            "a second click decides nothing"
        );
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("awaits approval")
        );
        let detail = app
            .wait_for(&id, "the remediation", |d| job_states(d) == ["done"])
            .await;
        let phases = phases(&detail);
        assert_eq!(phases, ["diagnose", "remediate"]);
        let timeline = kinds(&detail);
        let approved = timeline.iter().position(|k| k == "approved").unwrap();
        let remediated = timeline.iter().position(|k| k == "remediated").unwrap();
        assert!(approved < remediated, "{timeline:?}");
        assert_eq!(detail["remediated"], true);

        // Nobody approves the next one: it expires and escalates.
        let other = created(&app, firing("expire")).await;
        app.wait_for(&other, "the plan to await approval", |d| {
            job_states(d) == ["awaiting_approval"]
        })
        .await;
        let due = app.db_exec(
            "UPDATE jobs SET expires_ms = 0 WHERE incident_id = ?1 AND state = 'awaiting_approval'",
            &other,
        );
        assert_eq!(due, 1, "the approval window has passed");
        let detail = app
            .wait_for(&other, "the approval to expire", |d| {
                job_states(d) == ["expired"]
            })
            .await;
        let timeline = kinds(&detail);
        assert!(
            timeline.contains(&"approval-expired".to_owned()),
            "{timeline:?}"
        );
        assert_eq!(timeline.last().unwrap(), "escalated");
        assert_eq!(detail["escalated"], true);
        assert_eq!(
            detail["runs"].as_array().unwrap().len(),
            1,
            "never remediated"
        );

        // Rejection ends the plan without running it.
        let third = created(&app, firing("reject")).await;
        app.wait_for(&third, "the plan", |d| {
            job_states(d) == ["awaiting_approval"]
        })
        .await;
        let (status, _) = app
            .post(&format!("/api/incidents/{third}/reject"), "")
            .await;
        assert_eq!(status, StatusCode::OK);
        let detail = app.incident(&third).await;
        assert_eq!(job_states(&detail), ["rejected"]);
        app.stop().await;
    }

    async fn a_plan_queued_without_approval_waits_when_the_policy_requires_it() {
        let env = Env::new();
        env.policy("probe", "probe", &probe_policy("approve", ""));
        let app = Running::start(env).await;
        let id = created(&app, firing("requeued")).await;
        app.wait_for(&id, "the plan to await approval", |d| {
            job_states(d) == ["awaiting_approval"]
        })
        .await;
        // What auto mode leaves behind when the policy changes to approve before the worker
        // gets to it: the remediation queued with nobody's approval.
        let flipped = app.db_exec(
            "UPDATE jobs SET state = 'queued', run_at_ms = 0 WHERE incident_id = ?1 AND decided_by IS NULL",
            &id,
        );
        assert_eq!(flipped, 1);
        let detail = app
            .wait_for(&id, "the plan sent back for approval", |d| {
                job_states(d) == ["awaiting_approval"]
                    && d["timeline"].as_array().unwrap().iter().any(|e| {
                        e["message"] == "probe's policy now says mode approve: the plan awaits approval"
                    })
            })
            .await;
        assert_eq!(
            detail["runs"].as_array().unwrap().len(),
            1,
            "not remediated"
        );
        app.post(
            &format!("/api/incidents/{id}/approve"),
            r#"{"by": "alice"}"#,
        )
        .await;
        let detail = app
            .wait_for(&id, "the approved remediation", |d| {
                job_states(d) == ["done"]
            })
            .await;
        assert_eq!(detail["runs"].as_array().unwrap().len(), 2);
        app.stop().await;
    }

    async fn the_pause_switch_holds_remediation_but_not_diagnosis() {
        let env = Env::new();
        env.policy("probe", "probe", &probe_policy("auto", ""));
        let app = Running::start(env).await;
        let (status, _) = app.post("/api/remediation", r#"{"paused": true}"#).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(app.get("/api/remediation").await.1, json!({"paused": true}));

        let id = created(&app, firing("paused")).await;
        let detail = app
            .wait_for(&id, "the held plan", |d| {
                job_states(d) == ["awaiting_approval"]
            })
            .await;
        assert_eq!(
            detail["runs"].as_array().unwrap().len(),
            1,
            "diagnosed only"
        );
        assert!(
            detail["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["message"] == "remediation is paused: the plan awaits approval"),
            "{detail:#}"
        );
        // Approving during the pause still does not remediate.
        app.post(&format!("/api/incidents/{id}/approve"), "").await;
        let detail = app
            .wait_for(&id, "the plan held again", |d| {
                job_states(d) == ["awaiting_approval"] && kinds(d).contains(&"paused".to_owned())
            })
            .await;
        assert_eq!(detail["runs"].as_array().unwrap().len(), 1);

        let (status, _) = app.post("/api/remediation", r#"{"paused": false}"#).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = app.post("/api/remediation", r#"{"pause": false}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        app.post(&format!("/api/incidents/{id}/approve"), "").await;
        let detail = app
            .wait_for(&id, "the remediation", |d| job_states(d) == ["done"])
            .await;
        assert_eq!(detail["runs"].as_array().unwrap().len(), 2);
        app.stop().await;
    }

    async fn an_exhausted_run_budget_escalates_instead_of_running() {
        let env = Env::new();
        env.policy(
            "probe",
            "probe",
            &probe_policy("diagnose", "max_runs = { count = 1, per = \"1h\" }"),
        );
        let app = Running::start(env).await;
        let first = created(&app, firing("budget-1")).await;
        app.wait_for(&first, "the first run", settled).await;
        let second = created(&app, firing("budget-2")).await;
        let detail = app
            .wait_for(&second, "the refusal", |d| job_states(d) == ["skipped"])
            .await;
        assert!(detail["runs"].as_array().unwrap().is_empty());
        let timeline = kinds(&detail);
        assert!(
            timeline.contains(&"budget-exhausted".to_owned()),
            "{timeline:?}"
        );
        assert_eq!(timeline.last().unwrap(), "escalated");
        let (_, runbooks) = app.get("/api/runbooks").await;
        assert_eq!(
            runbooks["runbooks"][0]["budget"],
            json!({"count": 1, "per": "1h", "used": 1})
        );
        app.stop().await;
    }

    async fn the_api_lists_filters_pages_and_documents_itself() {
        let env = Env::new();
        let app = Running::start(env).await;
        for n in 0..5 {
            created(&app, firing(&format!("list-{n}"))).await;
        }
        let (_, page) = app.get("/api/incidents?limit=2").await;
        assert_eq!(page["incidents"].as_array().unwrap().len(), 2);
        let next = page["next"].as_str().unwrap().to_owned();
        let (_, rest) = app
            .get(&format!("/api/incidents?limit=10&before={next}"))
            .await;
        assert_eq!(rest["incidents"].as_array().unwrap().len(), 3);
        assert!(rest["next"].is_null());
        let (status, error) = app.get("/api/incidents?limit=10&before=INC-GONE0000").await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "an unknown cursor is not page 1"
        );
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .starts_with("before: no incident \"INC-GONE0000\""),
            "{error}"
        );
        let (_, open) = app.get("/api/incidents?status=open&since=1h").await;
        assert_eq!(open["incidents"].as_array().unwrap().len(), 5);
        let (status, error) = app.get("/api/incidents?status=closed").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            error["error"],
            "status: \"closed\" is not one of open, acknowledged, mitigated, resolved"
        );
        let (status, _) = app.get("/api/incidents/INC-00000000").await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // No runbook applies: escalated straight away, and the timeline says why.
        let id = open["incidents"][0]["id"].as_str().unwrap();
        let detail = app.incident(id).await;
        assert_eq!(kinds(&detail), ["created", "escalated"]);
        assert_eq!(
            detail["timeline"][1]["message"],
            "no runbook matches this alert: manual response needed"
        );
        let (status, _) = app.post(&format!("/api/incidents/{id}/ack"), "").await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = app.post(&format!("/api/incidents/{id}/ack"), "").await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, _) = app.post(&format!("/api/incidents/{id}/resolve"), "").await;
        assert_eq!(status, StatusCode::OK);
        let (_, markdown) = app.get(&format!("/api/incidents/{id}/postmortem")).await;
        assert!(
            markdown
                .as_str()
                .unwrap()
                .contains("| acknowledged | acknowledged by api |")
        );

        // Every path in the OpenAPI document is routed.
        let (_, document) = app.get("/api/openapi.json").await;
        for (path, operations) in document["paths"].as_object().unwrap() {
            let concrete = path
                .replace("{id}/{action}", &format!("{id}/ack"))
                .replace("{id}", id);
            for method in operations.as_object().unwrap().keys() {
                let request = match method.as_str() {
                    "get" => app.client.get(format!("{}{concrete}", app.base)),
                    _ => app
                        .client
                        .post(format!("{}{concrete}", app.base))
                        .body("{}"),
                };
                let response = request.send().await.unwrap();
                let status = response.status();
                let body = response.text().await.unwrap();
                assert!(
                    !body.contains("no such route") && status != StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is documented but not served"
                );
            }
        }
        app.stop().await;
    }

    async fn grafana_and_generic_senders_open_and_resolve_incidents() {
        let mut env = Env::new();
        env.config.pipeline.reopen_window = HumanDuration(Duration::ZERO);
        let app = Running::start(env).await;
        // Grafana unified alerting's webhook body: the Alertmanager shape plus its own fields.
        let grafana = |status: &str| {
            json!({
                "receiver": "quell", "status": status, "orgId": 1, "version": "1",
                "state": if status == "firing" { "alerting" } else { "ok" },
                "title": "[FIRING:1] DiskFull", "message": "rendered", "groupKey": "{}:{}",
                "truncatedAlerts": 0, "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
                "externalURL": "http://grafana:3000/",
                "alerts": [{
                    "status": status,
                    "labels": {"alertname": "DiskFull", "grafana_folder": "infra", "severity": "high"},
                    "annotations": {"summary": "disk almost full"},
                    "startsAt": "2026-11-24T03:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://grafana/alerting/grafana/abc/view",
                    "fingerprint": "3f2a9c0d1e4b5a67", "silenceURL": "", "dashboardURL": "",
                    "panelURL": "", "values": {"B": 97.5, "C": 1}, "valueString": "[ var='B' ]"
                }]
            })
            .to_string()
        };
        let (status, answer) = app.post("/webhooks/grafana", grafana("firing")).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let id = answer["alerts"][0]["incident"].as_str().unwrap().to_owned();
        let detail = app.incident(&id).await;
        assert_eq!(detail["source"], "grafana");
        assert_eq!(detail["severity"], "high");
        assert_eq!(detail["title"], "disk almost full");
        let (_, answer) = app.post("/webhooks/grafana", grafana("resolved")).await;
        assert_eq!(
            answer["alerts"][0],
            json!({"action": "resolved", "incident": id})
        );

        let generic = json!({
            "dedup_key": "queue-billing", "title": "Queue backed up", "severity": "critical",
            "labels": {"service": "billing"}
        });
        let (status, answer) = app.post("/webhooks/generic", generic.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let id = answer["alerts"][0]["incident"].as_str().unwrap().to_owned();
        let detail = app.incident(&id).await;
        assert_eq!(
            (detail["source"].as_str(), detail["fingerprint"].as_str()),
            (Some("generic"), Some("queue-billing"))
        );
        assert_eq!(detail["title"], "Queue backed up");
        let (status, answer) = app
            .post(
                "/webhooks/generic",
                json!({"dedup_key": "queue-billing", "status": "resolved"}).to_string(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["alerts"][0]["action"], "resolved");
        // Without a starts_at it fires again later: a new incident, not a dropped alert.
        let (_, answer) = app.post("/webhooks/generic", generic.to_string()).await;
        assert_eq!(answer["alerts"][0]["action"], "created", "{answer}");
        assert_ne!(answer["alerts"][0]["incident"], id.as_str());
        let (status, answer) = app
            .post("/webhooks/generic", json!({"title": "no key"}).to_string())
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "kept as a dead letter, and a failure the sender shows: {answer}"
        );
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .starts_with("dedup_key (at /dedup_key) is required")
        );
        app.stop().await;
    }
}
