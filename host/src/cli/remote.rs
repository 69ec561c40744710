//! The CLI's client for a running daemon's API.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;

/// A path segment, percent-encoded.
pub fn segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The CLI calls the operator's own daemon at the URL they typed: the SSRF guard of the
/// runbook HTTP capability does not apply here.
fn client() -> anyhow::Result<reqwest::Client> {
    crate::capabilities::http::operator_client(Duration::from_secs(30))
}

async fn get(
    base: &str,
    token: Option<&str>,
    path: &str,
    query: &[(&str, String)],
) -> anyhow::Result<reqwest::Response> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut request = client()?.get(&url).query(query);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.with_context(|| {
        format!("cannot reach the daemon at {base} (is `quell serve` running?)")
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body: Value =
        serde_json::from_slice(&response.bytes().await.unwrap_or_default()).unwrap_or(Value::Null);
    let message = body["error"].as_str().unwrap_or("no details");
    bail!("{url}: {status}: {message}")
}

/// GET a JSON document.
pub async fn get_json(
    base: &str,
    token: Option<&str>,
    path: &str,
    query: &[(&str, String)],
) -> anyhow::Result<Value> {
    let bytes = get(base, token, path, query).await?.bytes().await?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// GET a text document.
pub async fn get_text(base: &str, token: Option<&str>, path: &str) -> anyhow::Result<String> {
    Ok(get(base, token, path, &[]).await?.text().await?)
}

fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

fn field<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or("-")
}

/// A page of incidents as a table.
pub fn render_list(page: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12}  {:<12}  {:<8}  {:<20}  TITLE",
        "ID", "STATUS", "SEVERITY", "CREATED"
    );
    for incident in page["incidents"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<12}  {:<12}  {:<8}  {:<20}  {}",
            field(incident, "id"),
            field(incident, "status"),
            field(incident, "severity"),
            field(incident, "created_at").get(..19).unwrap_or("-"),
            clean(field(incident, "title"))
        );
    }
    if let Some(next) = page["next"].as_str() {
        let _ = writeln!(out, "(more: --before {next} through the API)");
    }
    out
}

/// One incident with its timeline and calls.
pub fn render_detail(detail: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} ({}, {})",
        field(detail, "id"),
        clean(field(detail, "title")),
        field(detail, "severity"),
        field(detail, "status")
    );
    let _ = writeln!(out, "\ntimeline:");
    for event in detail["timeline"].as_array().into_iter().flatten() {
        let runbook = event["runbook"]
            .as_str()
            .map(|r| format!(" [{r}]"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}  {}{}: {}",
            field(event, "at").get(..19).unwrap_or("-"),
            field(event, "kind"),
            runbook,
            clean(field(event, "message"))
        );
    }
    for run in detail["runs"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "\nrun {} {} → {} ({} ms)",
            field(run, "runbook"),
            field(run, "phase"),
            field(run, "outcome"),
            run["duration_ms"]
        );
        for call in run["calls"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {} {} {}: {}",
                field(call, "capability"),
                crate::postmortem::decision(call),
                clean(&crate::postmortem::shown_call(call)),
                clean(field(call, "rule"))
            );
        }
    }
    out
}
