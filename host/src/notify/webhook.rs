//! The generic outgoing webhook: one JSON event per lifecycle change, signed the Standard
//! Webhooks way.
//!
//! ```text
//! POST <url>
//! webhook-id: quell-<delivery id>          (stable across retries: dedup on it)
//! webhook-timestamp: <unix seconds>
//! webhook-signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>
//!
//! {"type": "incident.escalated", "timestamp": "…", "data": <the notice>}
//! ```

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::{Destination, KINDS, Notice, Outcome, classify, retry_after, routed, transport};
use crate::config::{Route, WebhookConfig};
use crate::store::Store;

/// The secret's key bytes: `whsec_<base64>` decodes, anything else is used as is.
pub fn key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// `v1,<base64 signature>` of a delivery.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    // HMAC takes keys of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// The outgoing webhook destination.
pub struct Webhook {
    url: String,
    key: Option<Vec<u8>>,
    route: Route,
    client: reqwest::Client,
}

impl Webhook {
    /// From `[notify.webhook]`.
    pub fn new(config: &WebhookConfig, client: reqwest::Client) -> anyhow::Result<Self> {
        url::Url::parse(&config.url)
            .map_err(|e| anyhow::anyhow!("[notify.webhook] url {:?}: {e}", config.url))?;
        Ok(Self {
            url: config.url.clone(),
            key: config.secret.as_deref().map(key),
            route: config.route.clone(),
            client,
        })
    }
}

impl Destination for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn accepts(&self, notice: &Notice) -> bool {
        routed(&self.route, KINDS, notice)
    }

    async fn send(&self, _store: &Store, delivery: i64, notice: &Notice) -> Outcome {
        let body = json!({
            "type": format!("incident.{}", notice.kind),
            "timestamp": notice.at,
            "data": notice,
        })
        .to_string();
        let id = format!("quell-{delivery}");
        let timestamp = chrono::Utc::now().timestamp();
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(key) = &self.key {
            request = request.header("webhook-signature", signature(key, &id, timestamp, &body));
        }
        match request.body(body).send().await {
            Ok(response) => {
                let status = response.status();
                let after = retry_after(response.headers());
                let text = response.text().await.unwrap_or_default();
                classify(status, after, &text)
            }
            Err(e) => transport(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_standard_webhooks_reference() {
        // The example from the Standard Webhooks specification.
        let key = key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let sig = signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
