//! Provisioning webhooks to the vendor's product, following the Standard Webhooks convention:
//! `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">` with a `whsec_<base64>` secret. Sent from the durable outbox
//! with retries; a delivery that keeps failing is kept as dead and can be replayed.

use std::time::Duration;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use marketlink_core::{Subscription, Tenant};
use marketlink_store::{NewJob, QueueItem, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::Engine;

pub const WEBHOOK_JOB: &str = "vendor_webhook";

/// `[webhooks]`: where the vendor's product learns of changes.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// The vendor's endpoint (https in production).
    pub url: String,
    /// `whsec_` followed by base64 of at least 24 random bytes (Standard Webhooks format).
    pub secret: String,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl WebhookSettings {
    /// The HMAC key: the base64 after `whsec_`.
    pub fn key(&self) -> Result<Vec<u8>, String> {
        let encoded = self
            .secret
            .strip_prefix("whsec_")
            .ok_or("the webhook secret must start with `whsec_`")?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|e| format!("the webhook secret is not base64 after `whsec_`: {e}"))?;
        if key.len() < 24 {
            return Err("the webhook secret must carry at least 24 bytes".into());
        }
        Ok(key)
    }
}

/// The `webhook-signature` value for a delivery.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this never fails; an empty signature would not verify.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// What a webhook says about a subscription.
pub fn subscription_data(s: &Subscription) -> Value {
    json!({
        "subscription": {
            "id": s.id,
            "tenant_id": s.tenant_id,
            "marketplace": s.external.marketplace,
            "external_id": s.external.external_id,
            "product_code": s.external.product_code,
            "product_id": s.product_id,
            "plan_id": s.plan_id,
            "quantity": s.quantity,
            "status": s.status,
            "free_trial": s.free_trial,
        }
    })
}

pub fn tenant_data(t: &Tenant) -> Value {
    json!({
        "tenant": {
            "id": t.id,
            "name": t.name,
            "company": t.company,
            "contact_email": t.contact_email,
        }
    })
}

/// Why a delivery did not succeed.
pub(crate) enum DeliveryError {
    Retry(String, Option<Duration>),
    Permanent(String),
}

impl Engine {
    /// Queues a webhook of `event_type` (e.g. `subscription.activated`) if webhooks are on.
    pub async fn notify_vendor(&self, event_type: &str, data: Value) -> Result<(), StoreError> {
        if self.webhooks.is_none() {
            return Ok(());
        }
        let now = self.clock.now();
        let timestamp = now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        self.store
            .outbox_enqueue(
                &NewJob {
                    marketplace: "vendor".into(),
                    kind: WEBHOOK_JOB.into(),
                    dedup_key: uuid::Uuid::now_v7().to_string(),
                    payload: json!({ "type": event_type, "timestamp": timestamp, "data": data }),
                    run_at: now,
                },
                now,
            )
            .await?;
        self.outbox_ready.notify_one();
        Ok(())
    }

    /// Sends one queued webhook.
    pub(crate) async fn deliver(&self, job: &QueueItem) -> Result<(), DeliveryError> {
        let Some(settings) = &self.webhooks else {
            return Err(DeliveryError::Permanent(
                "webhooks are not configured".into(),
            ));
        };
        let key = settings.key().map_err(DeliveryError::Permanent)?;
        let body = serde_json::to_vec(&job.payload)
            .map_err(|e| DeliveryError::Permanent(e.to_string()))?;
        // The job id is the webhook id: stable across retries, so receivers de-duplicate.
        let id = format!("msg_{}", job.id.simple());
        let timestamp = self.clock.now().unix_timestamp();
        let response = self
            .http
            .post(&settings.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", sign(&key, &id, timestamp, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| {
                DeliveryError::Retry(format!("cannot reach {}: {e}", settings.url), None)
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        // Every failure is retried until the attempt limit: the vendor's endpoint may be
        // deploying or misconfigured, and the operator can replay what was given up.
        Err(DeliveryError::Retry(
            format!("the endpoint answered {status}"),
            retry_after,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example from the Standard Webhooks specification's reference implementations.
        let settings = WebhookSettings {
            url: "http://localhost".into(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        };
        let key = settings.key().unwrap();
        let signature = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_are_validated_and_never_printed() {
        let bad = WebhookSettings {
            url: "u".into(),
            secret: "plain".into(),
        };
        assert!(bad.key().is_err());
        let short = WebhookSettings {
            url: "u".into(),
            secret: "whsec_c2hvcnQ=".into(),
        };
        assert!(short.key().is_err());
        assert!(!format!("{short:?}").contains("c2hvcnQ"));
    }
}
