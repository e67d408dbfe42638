//! Webhook sender: POSTs operations to the vendor with a signed JWT, retries failed deliveries,
//! and settles ChangePlan/ChangeQuantity (PATCH, 4xx refusal or 10 s auto-accept, with no second
//! webhook) and Reinstate (notify-only: completes on its own).

use std::{sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    Shared,
    config::WebhookTokenVersion,
    errors::ApiError,
    keys::{derived_guid, random_token},
    state::{MarketplaceAction, OperationStatus, RequestSource, WebhookAttempt, rfc3339},
};

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
fn payload(shared: &Shared, operation: Uuid) -> Option<(Value, Settles)> {
    let state = shared.lock();
    let op = state.operation(operation)?;
    let sub = state.subscription(op.subscription_id)?;
    let publisher = shared.config.publisher_id.as_str();
    let mut body = op.to_json(publisher);
    let obj = body.as_object_mut()?;
    obj.insert(
        "operationRequestSource".into(),
        json!(match op.source {
            RequestSource::Azure => "Azure",
            RequestSource::Partner => "Partner",
        }),
    );
    obj.insert("subscription".into(), sub.to_json(publisher));
    obj.insert("purchaseToken".into(), Value::Null);
    let from_azure = op.source == RequestSource::Azure && op.status == OperationStatus::InProgress;
    let settles = if from_azure && op.action.awaits_ack() {
        Settles::Refusable
    } else if from_azure && op.action.completes_alone() {
        Settles::Alone
    } else {
        Settles::Already
    };
    Some((body, settles))
}

/// How the operation behind a webhook ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settles {
    /// Ended already, or ended by someone else (a publisher's operation).
    Already,
    /// ChangePlan/ChangeQuantity: the publisher may refuse (PATCH Failure or a 4xx answer)
    /// within the window; then it is accepted on its own, with no second webhook (Microsoft's
    /// webhook page; `azure-details.md`, Operations: "no PATCH within 10 s = auto Success").
    Refusable,
    /// Reinstate: notify-only; a 4xx answer is a failed delivery, retried; it completes on
    /// its own after the window, unless the publisher PATCHed it first (older docs).
    Alone,
}

/// How the deliveries of one webhook ended.
enum Delivery {
    /// The vendor answered 2xx.
    Delivered,
    /// The vendor answered 4xx to a change it may refuse.
    Refused(u16),
    /// Every attempt failed.
    Undelivered,
    /// The operation is gone or the sandbox shut down: nothing left to settle.
    Abandoned,
}

async fn deliver(shared: Arc<Shared>, operation: Uuid) {
    let (delivery, settles) = send_with_retries(&shared, operation).await;
    if settles == Settles::Already {
        return;
    }
    let keep_refused = shared.config.apply_refused_changes;
    let refused = |reason: String| {
        let now = shared.now();
        shared
            .lock()
            .settle_operation(operation, false, Some(reason), keep_refused, now);
    };
    match delivery {
        Delivery::Abandoned => {}
        Delivery::Refused(status) => {
            refused(format!(
                "refused: the webhook was answered with HTTP {status}"
            ));
        }
        Delivery::Undelivered => refused("the webhook could not be delivered".into()),
        Delivery::Delivered => {
            if !shared.sleep(shared.config.change_ack_timeout()).await {
                return;
            }
            let now = shared.now();
            // No-op when the publisher already PATCHed the operation. No second webhook.
            shared
                .lock()
                .settle_operation(operation, true, None, keep_refused, now);
        }
    }
}

/// Sends the webhook until the vendor takes it, refuses it, or the attempts run out; also
/// returns how its operation settles.
async fn send_with_retries(shared: &Shared, operation: Uuid) -> (Delivery, Settles) {
    let max_attempts = shared.config.webhook_max_attempts.max(1);
    let mut settles = Settles::Already;
    for attempt in 1..=max_attempts {
        let Some((body, how)) = payload(shared, operation) else {
            return (Delivery::Abandoned, settles);
        };
        // The first attempt decides: later ones may see the operation settled meanwhile.
        if attempt == 1 {
            settles = how;
        }
        match send_once(shared, operation, attempt, &body).await {
            Some(s) if (200..300).contains(&s) => return (Delivery::Delivered, settles),
            Some(s) if (400..500).contains(&s) && settles == Settles::Refusable => {
                return (Delivery::Refused(s), settles);
            }
            _ => {}
        }
        if attempt == max_attempts {
            break;
        }
        if !shared.sleep(retry_delay(shared, attempt)).await {
            return (Delivery::Abandoned, settles);
        }
    }
    (Delivery::Undelivered, settles)
}

/// One POST of the webhook, recorded in `webhook_attempts`; the vendor's HTTP status, if any.
async fn send_once(shared: &Shared, operation: Uuid, attempt: u32, body: &Value) -> Option<u16> {
    let action = match body.get("action").and_then(Value::as_str) {
        Some("ChangePlan") => "ChangePlan",
        Some("ChangeQuantity") => "ChangeQuantity",
        Some("Suspend") => "Suspend",
        Some("Reinstate") => "Reinstate",
        Some("Renew") => "Renew",
        _ => "Unsubscribe",
    };
    let token = webhook_token(shared);
    if let Ok(token) = &token {
        crate::fuzz_seed("azure_webhook", body.to_string().as_bytes());
        crate::fuzz_seed("azure_jwt", format!("Bearer {token}").as_bytes());
        // The same token with its claims spelled out, which the target mutates better.
        if let Some(claims) = token
            .split('.')
            .nth(1)
            .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
        {
            let seed = [format!("Bearer {token}\n").as_bytes(), &claims].concat();
            crate::fuzz_seed("azure_jwt", &seed);
        }
    }
    let (status, error) = match token {
        Err(e) => (None, Some(format!("minting the token: {e}"))),
        Ok(token) => match shared
            .http
            .post(&shared.config.webhook_url)
            .bearer_auth(token)
            .json(body)
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
    status
}

/// The wait before attempt `attempt + 1` (the last configured delay repeats).
fn retry_delay(shared: &Shared, attempt: u32) -> Duration {
    let delays = &shared.config.webhook_retry_delays_ms;
    let index = usize::try_from(attempt - 1).unwrap_or(usize::MAX);
    let delay = delays.get(index).or(delays.last()).copied().unwrap_or(1000);
    Duration::from_millis(delay)
}
