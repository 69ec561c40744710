//! The console's pages, rendered on the server (maud escapes every value). No inline script
//! or style: the Content-Security-Policy allows only `/console.css` and `/console.js`.

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use super::session::Role;
use crate::store::{IncidentDetail, IncidentSummary, RecentRun};

/// A page: the navigation, `title`, and `body`.
pub fn layout(title: &str, signed_in: Option<(Role, &str)>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Quell" }
                link rel="stylesheet" href="/console.css";
                script src="/console.js" defer {}
            }
            body {
                header {
                    nav aria-label="Main" {
                        a href="/" { "Incidents" }
                        a href="/runbooks" { "Runbooks" }
                        a href="/dead" { "Dead letters" }
                        @if let Some((role, csrf)) = signed_in {
                            span.role { (if role == Role::Operator { "operator" } else { "viewer" }) }
                            form method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" { h1 { (title) } (body) }
            }
        }
    }
}

/// The sign-in form.
pub fn login(error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error { p.error role="alert" { (error) } }
        form method="post" action="/login" {
            label for="token" { "API token" }
            input id="token" name="token" type="password" autocomplete="current-password" required;
            button type="submit" { "Sign in" }
        }
        p { "An operator token ([auth] api_tokens) may act; a viewer token ([auth] viewer_tokens) may only read." }
    }
}

/// The link to the next (older) page of the list, keeping the filters.
pub fn older(next: Option<&str>, query: &str) -> Markup {
    html! {
        @if let Some(next) = next {
            p { a href={ "/?" (query) "before=" (next) } { "Older incidents" } }
        }
    }
}

/// The incidents table (also what the page's script refreshes).
pub fn incidents_table(incidents: &[IncidentSummary]) -> Markup {
    html! {
        table id="incidents" data-refresh="5" {
            caption { "Newest first; refreshed every 5 seconds." }
            thead { tr { th scope="col" { "Incident" } th scope="col" { "Severity" } th scope="col" { "Status" } th scope="col" { "Title" } th scope="col" { "Created" } } }
            tbody {
                @for i in incidents {
                    tr {
                        td { a href={ "/incidents/" (i.id) } { (i.id) } }
                        td.severity { (i.severity) }
                        td.status { (i.status) @if i.escalated { " · escalated" } }
                        td { (i.title) }
                        td { time { (i.created_at) } }
                    }
                }
            }
        }
    }
}

/// The filter form above the incidents table.
pub fn filters(status: Option<&str>, severity: Option<&str>, since: Option<&str>) -> Markup {
    let option = |value: &str, current: Option<&str>| {
        html! { option value=(value) selected[current == Some(value)] { (if value.is_empty() { "any" } else { value }) } }
    };
    html! {
        form method="get" action="/" {
            label for="status" { "Status" }
            select id="status" name="status" {
                @for s in ["", "open", "acknowledged", "mitigated", "resolved"] { (option(s, status)) }
            }
            label for="severity" { "Severity" }
            select id="severity" name="severity" {
                @for s in ["", "critical", "high", "medium", "low", "info"] { (option(s, severity)) }
            }
            label for="since" { "Since" }
            select id="since" name="since" {
                @for s in ["", "1h", "24h", "7d", "30d"] { (option(s, since)) }
            }
            button type="submit" { "Filter" }
        }
    }
}

fn pairs(value: &Value) -> Markup {
    html! {
        dl {
            @if let Some(map) = value.as_object() {
                @for (k, v) in map { dt { (k) } dd { (v.as_str().map_or_else(|| v.to_string(), str::to_owned)) } }
            }
        }
    }
}

/// A button that posts an action with the session's CSRF token.
fn action(path: &str, csrf: &str, label: &str, runbook: Option<&str>) -> Markup {
    html! {
        form method="post" action=(path) {
            input type="hidden" name="csrf" value=(csrf);
            @if let Some(runbook) = runbook { input type="hidden" name="runbook" value=(runbook); }
            button type="submit" { (label) }
        }
    }
}

/// An incident: header, labels, timeline, findings and plans, every call, the actions the
/// role may take, and the post-mortem draft.
pub fn incident(detail: &IncidentDetail, role: Role, csrf: &str, postmortem: &str) -> Markup {
    let i = &detail.incident;
    let base = format!("/incidents/{}", i.id);
    let waiting: Vec<&str> = detail
        .jobs
        .iter()
        .filter(|j| j.state == "awaiting_approval")
        .map(|j| j.runbook.as_str())
        .collect();
    html! {
        p.summary { span.severity { (i.severity) } " · " span.status { (i.status) } @if i.escalated { " · escalated" } @if i.remediated { " · remediated" } }
        @if role == Role::Operator {
            section aria-label="Actions" .actions {
                @if i.status == "open" { (action(&format!("{base}/ack"), csrf, "Acknowledge", None)) }
                @if i.status != "resolved" { (action(&format!("{base}/resolve"), csrf, "Resolve", None)) }
                @for runbook in &waiting {
                    (action(&format!("{base}/approve"), csrf, &format!("Approve {runbook}'s plan"), Some(runbook)))
                    (action(&format!("{base}/reject"), csrf, &format!("Reject {runbook}'s plan"), Some(runbook)))
                }
            }
        }
        h2 { "Labels" } (pairs(&detail.labels))
        h2 { "Annotations" } (pairs(&detail.annotations))
        @if !detail.alerts.is_empty() {
            h2 { "Alerts" }
            ul { @for a in &detail.alerts { li { (a.fingerprint) " — " (a.status) " — " (a.title) } } }
        }
        h2 { "Timeline" }
        table.timeline {
            thead { tr { th scope="col" { "Time (UTC)" } th scope="col" { "Event" } th scope="col" { "Runbook" } th scope="col" { "What happened" } } }
            tbody {
                @for e in &detail.timeline {
                    tr { td { (e.at) } td { (e.kind) } td { (e.runbook.as_deref().unwrap_or("")) } td { (e.message) } }
                }
            }
        }
        h2 { "Runs" }
        @for run in &detail.runs {
            section.run {
                h3 { (run.runbook) " — " (run.phase) " — " (run.outcome) " (" (run.duration_ms) " ms)" }
                @if let Some(result) = &run.result {
                    @if let Some(findings) = result["findings"].as_array() {
                        ul.findings { @for f in findings { li { (if f["ok"] == true { "✓ " } else { "✗ " }) (f["name"].as_str().unwrap_or("")) ": " (f["summary"].as_str().unwrap_or("")) } } }
                    }
                    @if let Some(plan) = result["plan"].as_array().filter(|p| !p.is_empty()) {
                        p { "Plan:" } ol { @for step in plan { li { (step.as_str().unwrap_or("")) } } }
                    }
                }
                @if let Some(error) = &run.error { p.error { (error) } }
                @for call in &run.calls {
                    details.call {
                        summary {
                            code { (call["command"].as_str().map_or_else(|| call["request"].to_string(), str::to_owned)) }
                            " — " (call["decision"].as_str().unwrap_or("")) " — " (call["rule"].as_str().unwrap_or(""))
                        }
                        p { (call["capability"].as_str().unwrap_or("")) " in " (call["phase"].as_str().unwrap_or("")) ", " (call["duration_ms"]) " ms" }
                        pre { (serde_json::to_string_pretty(&call["result"]).unwrap_or_default()) }
                    }
                }
            }
        }
        h2 { "Post-mortem draft" }
        pre.postmortem { (postmortem) }
    }
}

/// The runbooks with their recent runs, and the pause switch.
pub fn runbooks(
    runbooks: &Value,
    runs: &[RecentRun],
    paused: bool,
    role: Role,
    csrf: &str,
) -> Markup {
    html! {
        p { "Remediation is " strong { (if paused { "paused" } else { "running" }) } "." }
        @if role == Role::Operator {
            form method="post" action="/remediation" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="paused" value=(if paused { "false" } else { "true" });
                button type="submit" { (if paused { "Resume remediation" } else { "Pause remediation" }) }
            }
        }
        table {
            thead { tr { th scope="col" { "Runbook" } th scope="col" { "Mode" } th scope="col" { "Digest" } th scope="col" { "Budget used" } th scope="col" { "Recent runs" } th scope="col" { "Policy" } } }
            tbody {
                @for r in runbooks["runbooks"].as_array().into_iter().flatten() {
                    @let name = r["name"].as_str().unwrap_or("");
                    tr {
                        td { (name) }
                        td { (r["mode"].as_str().unwrap_or("")) }
                        td { code { (r["digest"].as_str().unwrap_or("").get(..12).unwrap_or("")) } }
                        td {
                            @if let Some(b) = r["budget"].as_object() {
                                (b["used"]) " of " (b["count"]) " per " (b["per"].as_str().unwrap_or(""))
                            } @else { "no budget" }
                        }
                        td {
                            ul { @for run in runs.iter().filter(|run| run.runbook == name).take(5) {
                                li { a href={ "/incidents/" (run.incident) } { (run.incident) } " " (run.phase) " → " (run.outcome) " " time { (run.started_at) } }
                            } }
                        }
                        td { details { summary { "policy" } pre { (serde_json::to_string_pretty(r).unwrap_or_default()) } } }
                    }
                }
            }
        }
        @if let Some(errors) = runbooks["errors"].as_array().filter(|e| !e.is_empty()) {
            h2 { "Load errors" }
            ul { @for e in errors { li { (e["path"].as_str().unwrap_or("")) ": " (e["error"].as_str().unwrap_or("")) } } }
        }
    }
}

/// Dead letters and dead notifications.
pub fn dead(letters: &Value, notifications: &Value) -> Markup {
    html! {
        h2 { "Deliveries kept as dead letters" }
        pre { (serde_json::to_string_pretty(letters).unwrap_or_default()) }
        h2 { "Notifications that gave up" }
        pre { (serde_json::to_string_pretty(notifications).unwrap_or_default()) }
    }
}
