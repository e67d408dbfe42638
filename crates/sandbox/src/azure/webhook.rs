//! Webhook sender: POSTs operations to the vendor with a signed JWT, retries failed deliveries,
//! and settles ChangePlan/ChangeQuantity/Reinstate (PATCH, 4xx refusal or 10 s auto-accept).

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    Shared,
    config::WebhookTokenVersion,
    keys::random_token,
    state::{ApiError, MarketplaceAction, WebhookAttempt, rfc3339},
};

/// A GUID derived from `parts` (stable object ids for service principals, pairwise subjects).
pub fn derived_guid(parts: &[&str]) -> Uuid {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// The bearer token on webhook calls (see the module docs for the claims).
pub fn webhook_token(shared: &Shared) -> anyhow::Result<String> {
    let config = &shared.config;
    let now = shared.now().unix_timestamp();
    let tid = config.publisher_tenant_id.as_str();
    // The marketplace's service principal in the publisher tenant.
    let oid = derived_guid(&["sp", tid, &config.marketplace_resource_id]);
    let claims = match config.webhook_token_version {
        WebhookTokenVersion::V2 => json!({
            "aud": config.publisher_app_id,
            "iss": shared.issuer_v2(tid),
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "aio": random_token(24),
            "azp": config.marketplace_resource_id,
            "azpacr": "1",
            "oid": oid,
            "rh": random_token(16),
            "sub": oid,
            "tid": tid,
            "uti": random_token(16),
            "ver": "2.0",
        }),
        WebhookTokenVersion::V1 => json!({
            "aud": config.publisher_app_id,
            "iss": format!("https://sts.windows.net/{tid}/"),
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "aio": random_token(24),
            "appid": config.marketplace_resource_id,
            "appidacr": "1",
            "idp": format!("https://sts.windows.net/{tid}/"),
            "oid": oid,
            "rh": random_token(16),
            "sub": oid,
            "tid": tid,
            "uti": random_token(16),
            "ver": "1.0",
        }),
    };
    shared.key.sign(&claims)
}

/// Creates a marketplace-side operation and sends its webhook.
pub fn marketplace_action(
    shared: &Arc<Shared>,
    subscription: Uuid,
    action: &MarketplaceAction,
) -> Result<Uuid, ApiError> {
    let now = shared.now();
    let op = shared
        .lock()
        .marketplace_action(&shared.config, subscription, action, now)?;
    dispatch(shared.clone(), op);
    Ok(op)
}

/// Sends the webhook of `operation` in the background.
pub fn dispatch(shared: Arc<Shared>, operation: Uuid) {
    tokio::spawn(async move { deliver(shared, operation).await });
}

/// The webhook body: the operation, its source and the full subscription.
fn payload(shared: &Shared, operation: Uuid) -> Option<(Value, bool)> {
    let state = shared.lock();
    let op = state.operation(operation)?;
    let sub = state.subscription(op.subscription_id)?;
    let publisher = shared.config.publisher_id.as_str();
    let mut body = op.to_json(publisher);
    let obj = body.as_object_mut()?;
    obj.insert(
        "operationRequestSource".into(),
        json!(match op.source {
            super::state::RequestSource::Azure => "Azure",
            super::state::RequestSource::Partner => "Partner",
        }),
    );
    obj.insert("subscription".into(), sub.to_json(publisher));
    obj.insert("purchaseToken".into(), Value::Null);
    let awaits_ack = op.action.awaits_ack() && op.source == super::state::RequestSource::Azure;
    Some((body, awaits_ack))
}

async fn deliver(shared: Arc<Shared>, operation: Uuid) {
    let config = &shared.config;
    let max_attempts = config.webhook_max_attempts.max(1);
    let mut delivered = false;
    let mut awaits_ack = false;
    for attempt in 1..=max_attempts {
        let Some((body, ack)) = payload(&shared, operation) else {
            return;
        };
        awaits_ack = ack;
        let action = match body.get("action").and_then(Value::as_str) {
            Some("ChangePlan") => "ChangePlan",
            Some("ChangeQuantity") => "ChangeQuantity",
            Some("Suspend") => "Suspend",
            Some("Reinstate") => "Reinstate",
            Some("Renew") => "Renew",
            _ => "Unsubscribe",
        };
        let (status, error) = match webhook_token(&shared) {
            Err(e) => (None, Some(format!("minting the token: {e}"))),
            Ok(token) => match shared
                .http
                .post(&config.webhook_url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
            {
                Ok(response) => (Some(response.status().as_u16()), None),
                Err(e) => (None, Some(e.to_string())),
            },
        };
        tracing::info!(%operation, attempt, ?status, "Azure sandbox webhook {action} delivery attempt {attempt}");
        shared.lock().webhook_attempts.push(WebhookAttempt {
            operation_id: operation,
            action,
            attempt,
            at: rfc3339(shared.now()),
            status,
            error,
        });
        match status {
            Some(s) if (200..300).contains(&s) => {
                delivered = true;
                break;
            }
            Some(s) if (400..500).contains(&s) && awaits_ack => {
                let now = shared.now();
                shared.lock().settle_operation(
                    operation,
                    false,
                    Some(format!("refused: the webhook was answered with HTTP {s}")),
                    now,
                );
                return;
            }
            _ => {}
        }
        if attempt == max_attempts {
            break;
        }
        let index = usize::try_from(attempt - 1).unwrap_or(usize::MAX);
        let delay = config
            .webhook_retry_delays_ms
            .get(index)
            .or(config.webhook_retry_delays_ms.last())
            .copied()
            .unwrap_or(1000);
        if !shared.sleep(Duration::from_millis(delay)).await {
            return;
        }
    }
    if !awaits_ack {
        return;
    }
    if !delivered {
        let now = shared.now();
        shared.lock().settle_operation(
            operation,
            false,
            Some("the webhook could not be delivered".into()),
            now,
        );
        return;
    }
    if !shared.sleep(config.change_ack_timeout()).await {
        return;
    }
    let now = shared.now();
    // No-op when the publisher already PATCHed the operation.
    shared.lock().settle_operation(operation, true, None, now);
}
