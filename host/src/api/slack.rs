//! `POST /slack/interactions`: the Approve / Reject buttons of plan messages.
//!
//! The request is verified before anything else: `v0=` HMAC-SHA256 of
//! `v0:{X-Slack-Request-Timestamp}:{raw body}` with the app's signing secret, compared in
//! constant time, and a timestamp within five minutes of now. Then the clicking user must be
//! one of `[notify.slack] approvers`, and the plan must still await approval: a plan is
//! decided once, so a double click (or a second approver) changes nothing. The answer comes
//! at once (Slack allows 3 s); the remediation runs on the pipeline, which checks the policy
//! again when it executes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{ApiError, AppState};
use crate::lifecycle::Transition;
use crate::store::now;

/// How far a request's timestamp may be from now.
pub const WINDOW_SECONDS: i64 = 300;

/// Verifies Slack's request signature; the error says why (for the log, not the caller).
pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("missing {name}"))
    };
    let timestamp = header("x-slack-request-timestamp")?;
    let signature = header("x-slack-signature")?;
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| "the timestamp is not a number".to_owned())?;
    if now.abs_diff(ts) > WINDOW_SECONDS.unsigned_abs() {
        return Err(format!(
            "the timestamp is {}s from now",
            now.saturating_sub(ts)
        ));
    }
    let given = signature
        .strip_prefix("v0=")
        .and_then(|hex_sig| hex::decode(hex_sig).ok())
        .ok_or_else(|| "the signature is not v0=<hex>".to_owned())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| "unusable signing secret".to_owned())?;
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&given)
        .map_err(|_| "the signature does not match".to_owned())
}

fn answer(status: StatusCode, text: &str) -> Response {
    (
        status,
        axum::Json(json!({"response_type": "ephemeral", "replace_original": false, "text": text})),
    )
        .into_response()
}

/// What an interaction's form body asks for, read before any state is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interaction {
    /// Not a form with a JSON `payload` field (answered 400).
    Malformed,
    /// Not a click on an Approve or Reject button (answered 200, nothing done).
    Ignored,
    /// A button whose value is not `incident|runbook` (answered 400).
    BadValue,
    /// A click on Approve or Reject.
    Decision {
        /// The clicking Slack user's id (empty when the payload has none).
        user: String,
        /// Approve (`true`) or Reject (`false`).
        approve: bool,
        /// The incident, before the first `|` of the button's value.
        incident: String,
        /// The runbook, after it.
        runbook: String,
        /// The digest of the plan the message showed, after the second `|` (absent on
        /// messages from before plans had digests).
        plan: Option<String>,
    },
}

/// Reads the `payload` field of an interaction's form body: who clicked which button.
pub fn interaction(body: &[u8]) -> Interaction {
    let payload: Option<Value> = url::form_urlencoded::parse(body)
        .find(|(key, _)| key == "payload")
        .and_then(|(_, value)| serde_json::from_str(&value).ok());
    let Some(payload) = payload else {
        return Interaction::Malformed;
    };
    let user = payload["user"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let action = &payload["actions"][0];
    let (Some(action_id), Some(value)) = (action["action_id"].as_str(), action["value"].as_str())
    else {
        return Interaction::Ignored;
    };
    let approve = match action_id {
        "approve" => true,
        "reject" => false,
        _ => return Interaction::Ignored,
    };
    let Some((incident, rest)) = value.split_once('|') else {
        return Interaction::BadValue;
    };
    // `incident|runbook|plan`; messages from before plans had digests name no plan.
    let (runbook, plan) = match rest.split_once('|') {
        Some((runbook, plan)) => (runbook, Some(plan.to_owned())),
        None => (rest, None),
    };
    Interaction::Decision {
        user,
        approve,
        incident: incident.to_owned(),
        runbook: runbook.to_owned(),
        plan,
    }
}

/// The handler.
pub async fn interactions(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(slack) = &app.config.notify.slack else {
        return ApiError::new(StatusCode::NOT_FOUND, "Slack is not configured").into_response();
    };
    let Some(secret) = &slack.signing_secret else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "Slack interactivity needs [notify.slack] signing_secret",
        )
        .into_response();
    };
    if let Err(why) = verify(secret, &headers, &body, now().1 / 1000) {
        tracing::warn!(%why, "Slack interaction refused");
        return super::auth::unauthorized();
    }
    let (user, approve, incident, runbook, plan) = match interaction(&body) {
        Interaction::Malformed => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "expected a form with a JSON payload field",
            )
            .into_response();
        }
        Interaction::Ignored => return answer(StatusCode::OK, "Nothing to do."),
        Interaction::BadValue => {
            return ApiError::new(StatusCode::BAD_REQUEST, "unrecognised button value")
                .into_response();
        }
        Interaction::Decision {
            user,
            approve,
            incident,
            runbook,
            plan,
        } => (user, approve, incident, runbook, plan),
    };
    if !slack.approvers.contains(&user) {
        let refused = app
            .store
            .apply(Transition::ApprovalRefused {
                incident: incident.clone(),
                message: format!("Slack user {user} is not an approver"),
            })
            .await;
        if let Err(e) = refused {
            tracing::warn!(error = %e, "cannot record a refused approval");
        }
        tracing::warn!(%user, %incident, "approval from a user who is not an approver refused");
        return answer(
            StatusCode::FORBIDDEN,
            "You are not an approver for Quell remediations.",
        );
    }
    let who = format!("slack:{user}");
    let decided = app
        .store
        .decide(incident.clone(), Some(runbook.clone()), plan, approve, who)
        .await;
    match decided {
        Ok(decision) if decision.runbooks.is_empty() => answer(
            StatusCode::CONFLICT,
            &format!(
                "The plan of {runbook} for {incident} was already decided, has expired, or was \
                 replaced by a newer plan (decide on the newest message)."
            ),
        ),
        Ok(_) => {
            if !approve {
                app.metrics.escalations.inc();
            }
            let verb = if approve { "approved" } else { "rejected" };
            answer(
                StatusCode::OK,
                &format!("{incident}: the plan of {runbook} is {verb}."),
            )
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-slack-request-timestamp", ts.parse().unwrap());
        h.insert("x-slack-signature", sig.parse().unwrap());
        h
    }

    #[test]
    fn slacks_documented_example_verifies() {
        // From Slack's "Verifying requests from Slack" page.
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let h = headers(
            "1531420618",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        );
        assert_eq!(verify(secret, &h, body, 1531420618 + 10), Ok(()));
        assert!(
            verify(secret, &h, body, 1531420618 + 301)
                .unwrap_err()
                .contains("from now")
        );
        let mut tampered = body.to_vec();
        tampered[0] = b'T';
        assert_eq!(
            verify(secret, &h, &tampered, 1531420618),
            Err("the signature does not match".to_owned())
        );
    }
}
