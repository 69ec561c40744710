//! Post-mortem drafts: the seed's template (summary, duration, timeline, root cause,
//! impact, what went well, what could be improved, action items) plus what Quell knows:
//! the diagnosis findings, each runbook with its digest and mode, and every capability
//! call with its decision.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::store::{IncidentDetail, Store, StoreError};

/// The draft to show for `detail`: the one stored when the incident resolved, while it is
/// still resolved that way (the second value is then true); otherwise, an open incident or
/// a draft not yet written, the draft rendered now.
pub async fn draft(
    store: &Store,
    detail: &IncidentDetail,
    public_url: Option<&str>,
) -> Result<(String, bool), StoreError> {
    let incident = &detail.incident;
    if incident.status == "resolved"
        && let Some(stored) = store.postmortem(incident.id.clone()).await?
        && incident.resolved_at.as_deref() == Some(stored.resolved_at.as_str())
    {
        return Ok((stored.body, true));
    }
    Ok((render(detail, public_url), false))
}

/// Markdown table cells: one line, pipes escaped, cut at `max` characters.
fn cell(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut out: String = flat.chars().take(max).collect();
    if flat.chars().count() > max {
        out.push('…');
    }
    out.replace('|', "\\|")
}

/// From when the alert says it started (else the first timeline entry) to when the sender
/// says it ended (else when Quell learned it resolved, else the last timeline entry).
fn duration(detail: &IncidentDetail) -> String {
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    let incident = &detail.incident;
    let first = incident
        .starts_at
        .as_deref()
        .and_then(parse)
        .or_else(|| detail.timeline.first().and_then(|e| parse(&e.at)));
    let last = [&incident.ended_at, &incident.resolved_at]
        .into_iter()
        .find_map(|t| t.as_deref().and_then(parse))
        .or_else(|| detail.timeline.last().and_then(|e| parse(&e.at)));
    match (first, last) {
        (Some(first), Some(last)) => {
            let minutes = (last - first).num_seconds() as f64 / 60.0;
            format!("{minutes:.0} minutes")
        }
        _ => "Unknown".to_owned(),
    }
}

/// The draft for an incident.
pub fn render(detail: &IncidentDetail, public_url: Option<&str>) -> String {
    let incident = &detail.incident;
    let mut out = String::new();
    let _ = writeln!(out, "# Post-Mortem: {}\n", incident.id);
    let _ = writeln!(out, "## Summary\n");
    let _ = writeln!(out, "- **Title:** {}", cell(&incident.title, 200));
    let _ = writeln!(out, "- **Severity:** {}", incident.severity);
    let _ = writeln!(out, "- **Duration:** {}", duration(detail));
    let _ = writeln!(
        out,
        "- **Date:** {}",
        incident
            .created_at
            .get(..10)
            .unwrap_or(&incident.created_at)
    );
    let _ = writeln!(out, "- **Status:** {}", incident.status);
    let _ = writeln!(
        out,
        "- **Source:** {} (fingerprint `{}`)",
        incident.source, incident.fingerprint
    );
    if let Some(ended) = &incident.ended_at {
        let _ = writeln!(out, "- **Ended (as the sender says):** {ended}");
    }
    if let Some(resolved) = &incident.resolved_at {
        let _ = writeln!(out, "- **Resolved (received):** {resolved}");
    }
    let _ = writeln!(
        out,
        "- **Escalated to on-call:** {}",
        if incident.escalated { "yes" } else { "no" }
    );
    if let Some(url) = public_url {
        let _ = writeln!(
            out,
            "- **Record:** {}/api/incidents/{}",
            url.trim_end_matches('/'),
            incident.id
        );
    }

    let _ = writeln!(out, "\n## Timeline\n");
    let _ = writeln!(out, "| Time (UTC) | Action | Details |");
    let _ = writeln!(out, "|------------|--------|---------|");
    for event in &detail.timeline {
        let action = match &event.runbook {
            Some(runbook) => format!("{} ({runbook})", event.kind),
            None => event.kind.clone(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            event.at.get(..19).unwrap_or(&event.at),
            cell(&action, 60),
            cell(&event.message, 120)
        );
    }

    let _ = writeln!(out, "\n## Diagnosis\n");
    let diagnosed: Vec<_> = detail
        .runs
        .iter()
        .filter(|r| r.phase == "diagnose")
        .collect();
    if diagnosed.is_empty() {
        let _ = writeln!(out, "_No runbook diagnosed this incident._");
    }
    for run in diagnosed {
        let _ = writeln!(
            out,
            "### {} (sha256 `{}`, mode {}{})\n",
            run.runbook,
            run.digest.get(..12).unwrap_or(&run.digest),
            run.mode,
            if run.dry_run { ", dry run" } else { "" }
        );
        match (&run.result, &run.error) {
            (Some(result), _) => findings(&mut out, result),
            (None, Some(error)) => {
                let _ = writeln!(out, "Diagnosis failed: {}", cell(error, 500));
            }
            (None, None) => {
                let _ = writeln!(out, "Did not apply (`matches` returned false).");
            }
        }
        let _ = writeln!(out);
    }

    let remediations: Vec<_> = detail
        .runs
        .iter()
        .filter(|r| r.phase == "remediate")
        .collect();
    if !remediations.is_empty() {
        let _ = writeln!(out, "## Remediation\n");
        for run in remediations {
            let what = match (&run.result, &run.error) {
                (Some(result), _) => format!(
                    "{}: {}",
                    result["action_taken"].as_str().unwrap_or(""),
                    result["details"].as_str().unwrap_or("")
                ),
                (None, Some(error)) => format!("error: {error}"),
                (None, None) => String::new(),
            };
            let _ = writeln!(
                out,
                "- **{}** ({}{}): {} — {}",
                run.runbook,
                run.outcome,
                if run.dry_run { ", dry run" } else { "" },
                run.started_at,
                cell(&what, 300)
            );
        }
        let _ = writeln!(out);
    }

    let checks: Vec<_> = detail.runs.iter().filter(|r| r.phase == "verify").collect();
    if !checks.is_empty() {
        let _ = writeln!(out, "## Verification\n");
        for run in checks {
            let found = match (&run.result, &run.error) {
                (Some(result), _) => {
                    let failing: Vec<String> = result["findings"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|f| f["ok"] == false)
                        .map(|f| {
                            format!(
                                "✗ {}: {}",
                                f["name"].as_str().unwrap_or(""),
                                f["summary"].as_str().unwrap_or("")
                            )
                        })
                        .collect();
                    let summary = result["summary"].as_str().unwrap_or("");
                    if failing.is_empty() {
                        format!("checks pass — {summary}")
                    } else {
                        format!("still failing — {summary} ({})", failing.join("; "))
                    }
                }
                (None, Some(error)) => format!("the check could not run: {error}"),
                (None, None) => "checks pass — `matches` no longer applies".to_owned(),
            };
            let _ = writeln!(
                out,
                "- **{}** {}: {}",
                run.runbook,
                run.started_at,
                cell(&found, 300)
            );
        }
        let _ = writeln!(out);
    }

    let calls: Vec<(&str, &Value)> = detail
        .runs
        .iter()
        .flat_map(|r| r.calls.iter().map(move |c| (r.runbook.as_str(), c)))
        .collect();
    let _ = writeln!(out, "## Capability calls\n");
    if calls.is_empty() {
        let _ = writeln!(out, "_None._");
    } else {
        let _ = writeln!(
            out,
            "| Time (UTC) | Runbook | Phase | Capability | Command (or request) | Decision | Rule or reason |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for (runbook, call) in calls {
            let text = |key: &str| call[key].as_str().unwrap_or("").to_owned();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | `{}` | {} | {} |",
                text("started_at").get(..19).unwrap_or(""),
                runbook,
                call["phase"].as_str().unwrap_or(""),
                text("capability"),
                shown_call(call).replace('`', "'"),
                decision(call),
                cell(&text("rule"), 100)
            );
        }
    }

    let remediated = detail.incident.remediated;
    let _ = writeln!(
        out,
        "\n## Root Cause\n\n_To be filled in by the investigating engineer._"
    );
    let _ = writeln!(
        out,
        "\n## Impact\n\n_Describe user-facing impact, affected services, and blast radius._"
    );
    let _ = writeln!(out, "\n## What Went Well\n");
    let _ = writeln!(
        out,
        "- Automated detection triggered within monitoring thresholds"
    );
    let _ = writeln!(
        out,
        "- {}",
        if remediated {
            "Auto-remediation resolved the issue"
        } else {
            "Runbook provided diagnostic context for responders"
        }
    );
    let _ = writeln!(
        out,
        "\n## What Could Be Improved\n\n_Identify gaps in monitoring, automation, or response process._"
    );
    let _ = writeln!(out, "\n## Action Items\n");
    let _ = writeln!(out, "| Action | Owner | Priority | Status |");
    let _ = writeln!(out, "|--------|-------|----------|--------|");
    let _ = writeln!(out, "| _Add action items here_ | | | |");
    let _ = writeln!(out, "\n---\n_Generated automatically by Quell._");
    let _ = writeln!(out, "_Review and complete within 48 hours of resolution._");
    out
}

fn findings(out: &mut String, diagnosis: &Value) {
    if let Some(summary) = diagnosis["summary"].as_str() {
        let _ = writeln!(out, "{}\n", cell(summary, 1000));
    }
    if let Some(list) = diagnosis["findings"].as_array() {
        for finding in list {
            let _ = writeln!(
                out,
                "- {} **{}**: {}",
                if finding["ok"].as_bool() == Some(true) {
                    "✅"
                } else {
                    "❌"
                },
                cell(finding["name"].as_str().unwrap_or(""), 100),
                cell(finding["summary"].as_str().unwrap_or(""), 500)
            );
        }
    }
    if let Some(plan) = diagnosis["plan"].as_array().filter(|p| !p.is_empty()) {
        let _ = writeln!(out, "\nPlan:");
        for (n, step) in plan.iter().enumerate() {
            let _ = writeln!(out, "{}. {}", n + 1, cell(step.as_str().unwrap_or(""), 300));
        }
    }
}

/// Writes `draft`, the draft of `detail`, to `<dir>/<date>-<id>.md` (the seed's file name)
/// and returns the path.
pub fn save(dir: &Path, detail: &IncidentDetail, draft: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let date = detail.incident.created_at.get(..10).unwrap_or("undated");
    let path = dir.join(format!("{date}-{}.md", detail.incident.id));
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, draft)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// What a recorded call did, as an engineer reads it: the rendered command the host ran (or
/// would have run), else the request as the runbook made it.
pub fn shown_call(call: &Value) -> String {
    match call["command"].as_str() {
        Some(command) => cell(command, 300),
        None => cell(&call["request"].to_string(), 100),
    }
}

/// The call's decision; a write journaled as started whose result never came (the daemon
/// stopped while it ran) says so.
pub fn decision(call: &Value) -> String {
    let decision = call["decision"].as_str().unwrap_or("");
    if call["result"].get("pending").is_some() {
        format!("{decision} (started; result unknown)")
    } else {
        decision.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn calls_read_as_their_command_and_an_interrupted_write_says_so() {
        let command = "kubectl rollout undo deployment/api --namespace=production";
        let done = json!({
            "command": command, "request": {"verb": "RolloutUndo"},
            "decision": "allowed", "result": {"ok": {"exit_code": 0}},
        });
        assert_eq!(shown_call(&done), command);
        assert_eq!(decision(&done), "allowed");
        let started = json!({
            "command": command, "request": {"verb": "RolloutUndo"},
            "decision": "allowed", "result": {"pending": "started; the result is not known yet"},
        });
        assert_eq!(decision(&started), "allowed (started; result unknown)");
        let refused = json!({
            "request": {"verb": "Delete", "name": "api"},
            "decision": "denied", "result": {"error": {"denied": "no rule"}},
        });
        assert!(
            shown_call(&refused).contains("\"Delete\""),
            "{}",
            shown_call(&refused)
        );
    }
}
