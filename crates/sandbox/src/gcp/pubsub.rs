//! Cloud Pub/Sub as the vendor's subscription sees it (gcp.md §2): every procurement event is a
//! message whose `data` is base64 JSON. Pull subscriptions use the REST `:pull`,
//! `:acknowledge` and `:modifyAckDeadline` calls (cloud.google.com/pubsub/docs/reference/rest,
//! projects.subscriptions); an unacked message comes back once its ack deadline passes.
//! Push subscriptions POST the push envelope with an OIDC bearer token (S17) and retry any
//! answer that is not 102/200/201/202/204 with a growing delay ("at-least-once"; order is not
//! guaranteed without ordering keys). Chaos switches duplicate, reorder, drop or delay messages.

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use super::{
    Shared,
    auth::authorize,
    config::PubSubChaos,
    errors::{GoogleError, parse_body},
    model::timestamp,
};

const PUBSUB_SCOPE: &str = "https://www.googleapis.com/auth/pubsub";
/// Google's text for an empty `ackIds` (googleapis/google-cloud-python#1085).
const NO_ACK_IDS: &str = "You have not specified an ack ID in the request.";
/// How many published messages and push attempts are kept for inspection.
const LOG_LIMIT: usize = 10_000;

/// A published message (its `data` decoded).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishedMessage {
    pub message_id: String,
    pub data: Value,
    pub publish_time: OffsetDateTime,
    /// Dropped by the `drop_next` switch: never delivered.
    pub dropped: bool,
}

/// One push attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushAttempt {
    pub message_id: String,
    pub attempt: u32,
    /// The endpoint's status, or none when it could not be reached.
    pub status: Option<u16>,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
struct Delivery {
    /// Unique per delivery (duplicates share the message id, not this).
    key: u64,
    message: PublishedMessage,
    /// Pull: the current ack id (none while not handed out).
    ack_id: Option<String>,
    /// Pull: available again from this time (sandbox clock).
    visible_at: OffsetDateTime,
    /// Push: next attempt not before this instant.
    push_due: tokio::time::Instant,
    attempts: u32,
}

#[derive(Debug, Default)]
pub(crate) struct Queue {
    deliveries: Vec<Delivery>,
    pub published: Vec<PublishedMessage>,
    pub push_log: Vec<PushAttempt>,
    pub chaos: PubSubChaos,
    next_id: u64,
    next_key: u64,
    pusher_running: bool,
}

/// Publishes `payload` to the provider's topic, so to the vendor's subscription.
pub(crate) fn publish(shared: &Arc<Shared>, queue: &mut Queue, payload: Value) {
    queue.next_id += 1;
    let message = PublishedMessage {
        message_id: format!("{}", 10_000_000_000_000u64 + queue.next_id),
        data: payload,
        publish_time: shared.clock.now(),
        dropped: queue.chaos.drop_next > 0,
    };
    if queue.published.len() >= LOG_LIMIT {
        queue.published.remove(0);
    }
    queue.published.push(message.clone());
    if message.dropped {
        queue.chaos.drop_next -= 1;
        return;
    }
    let delay = std::mem::take(&mut queue.chaos.delay_next_ms);
    let delivery = Delivery {
        key: 0,
        visible_at: message.publish_time + Duration::milliseconds(delay as i64),
        push_due: tokio::time::Instant::now() + std::time::Duration::from_millis(delay),
        message,
        ack_id: None,
        attempts: 0,
    };
    let copies = if queue.chaos.duplicate { 2 } else { 1 };
    for _ in 0..copies {
        queue.next_key += 1;
        let delivery = Delivery {
            key: queue.next_key,
            ..delivery.clone()
        };
        if queue.chaos.reorder {
            queue.deliveries.insert(0, delivery.clone());
        } else {
            queue.deliveries.push(delivery.clone());
        }
    }
    if shared.config.push_endpoint.is_some() && !queue.pusher_running {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            queue.pusher_running = true;
            runtime.spawn(push_loop(shared.clone()));
        } else {
            tracing::warn!(
                "gcp sandbox: no tokio runtime, push delivery waits for the next publish"
            );
        }
    }
}

/// The push envelope (S17 and Pub/Sub's push docs: both camelCase and snake_case ids).
fn envelope(shared: &Shared, message: &PublishedMessage) -> Value {
    let data = STANDARD.encode(message.data.to_string());
    let publish_time = timestamp(message.publish_time);
    let envelope = json!({
        "message": {
            "data": data,
            "attributes": {},
            "messageId": message.message_id,
            "message_id": message.message_id,
            "publishTime": publish_time,
            "publish_time": publish_time,
        },
        "subscription": shared.config.subscription_name(),
    });
    crate::fuzz_seed("gcp_pubsub_body", envelope.to_string().as_bytes());
    envelope
}

/// Delivers push messages one at a time, in queue order, until the queue is empty.
async fn push_loop(shared: Arc<Shared>) {
    loop {
        let next = {
            let mut state = shared.lock();
            let now = tokio::time::Instant::now();
            let queue = &mut state.queue;
            let Some(earliest) = queue.deliveries.iter().map(|d| d.push_due).min() else {
                queue.pusher_running = false;
                return;
            };
            match queue.deliveries.iter().position(|d| d.push_due <= now) {
                Some(index) => {
                    let delivery = &mut queue.deliveries[index];
                    delivery.attempts += 1;
                    Ok((delivery.key, delivery.message.clone(), delivery.attempts))
                }
                None => Err(earliest),
            }
        };
        match next {
            Err(earliest) => tokio::time::sleep_until(earliest).await,
            Ok((key, message, attempt)) => {
                let (status, error) = push_once(&shared, &message).await;
                settle_push(&shared, key, message, attempt, status, error);
            }
        }
    }
}

async fn push_once(shared: &Shared, message: &PublishedMessage) -> (Option<u16>, Option<String>) {
    let (Some(endpoint), Some(audience)) =
        (&shared.config.push_endpoint, shared.config.push_audience())
    else {
        return (None, Some("no push endpoint".into()));
    };
    let token = match super::auth::push_token(shared, &audience) {
        Ok(token) => token,
        Err(e) => return (None, Some(format!("{e:#}"))),
    };
    let sent = shared
        .http
        .post(endpoint)
        .bearer_auth(token)
        .json(&envelope(shared, message))
        .send()
        .await;
    match sent {
        Ok(response) => (Some(response.status().as_u16()), None),
        Err(e) => (None, Some(e.to_string())),
    }
}

/// Records an attempt; an ack (102, 200, 201, 202, 204) removes the delivery, anything else
/// schedules a retry with the next delay, up to `push_max_attempts`.
fn settle_push(
    shared: &Shared,
    key: u64,
    message: PublishedMessage,
    attempt: u32,
    status: Option<u16>,
    error: Option<String>,
) {
    let acked = matches!(status, Some(102 | 200 | 201 | 202 | 204));
    let mut state = shared.lock();
    let queue = &mut state.queue;
    if queue.push_log.len() >= LOG_LIMIT {
        queue.push_log.remove(0);
    }
    queue.push_log.push(PushAttempt {
        message_id: message.message_id,
        attempt,
        status,
        error,
    });
    let Some(index) = queue.deliveries.iter().position(|d| d.key == key) else {
        return;
    };
    let config = &shared.config;
    if acked || attempt >= config.push_max_attempts {
        if !acked {
            tracing::warn!(attempt, "gcp sandbox: push delivery given up");
        }
        queue.deliveries.remove(index);
        return;
    }
    let step = (attempt as usize).saturating_sub(1);
    let delays = &config.push_retry_delays_ms;
    let delay = delays.get(step).or(delays.last()).copied().unwrap_or(1000);
    queue.deliveries[index].push_due =
        tokio::time::Instant::now() + std::time::Duration::from_millis(delay);
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PullRequest {
    #[serde(default)]
    max_messages: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AckRequest {
    #[serde(default)]
    ack_ids: Vec<String>,
    #[serde(default)]
    ack_deadline_seconds: Option<i64>,
}

/// `GET /v1/projects/{project}/subscriptions/{subscription}`: the Subscription resource
/// (cloud.google.com/pubsub/docs/reference/rest/v1/projects.subscriptions/get), which a vendor's
/// health check reads; its topic is Procurement's (gcp.md §2, `projects/cloudcommerceproc-prod/
/// topics/<PROVIDER_ID>`).
pub(crate) async fn get_subscription(
    State(shared): State<Arc<Shared>>,
    Path((project, subscription)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = authorize(&shared, &headers, &[PUBSUB_SCOPE]).and_then(|_| {
        let name = format!("projects/{project}/subscriptions/{subscription}");
        if name != shared.config.subscription_name() {
            return Err(GoogleError::not_found(format!(
                "Resource not found (resource={subscription})."
            )));
        }
        let config = &shared.config;
        let push_config = match (&config.push_endpoint, config.push_audience()) {
            (Some(endpoint), audience) => json!({"pushEndpoint": endpoint, "oidcToken": {
                "serviceAccountEmail": config.push_service_account_email,
                "audience": audience.unwrap_or_default()}}),
            (None, _) => json!({}),
        };
        Ok(json!({
            "name": name,
            "topic": format!("projects/cloudcommerceproc-prod/topics/{}", config.provider_id),
            "pushConfig": push_config,
            "ackDeadlineSeconds": config.ack_deadline_secs,
        }))
    });
    match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/projects/{project}/subscriptions/{subscription}:{pull|acknowledge|modifyAckDeadline}`.
pub(crate) async fn subscription_call(
    State(shared): State<Arc<Shared>>,
    Path((project, call)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = (|| {
        authorize(&shared, &headers, &[PUBSUB_SCOPE])?;
        let (subscription, verb) = call.split_once(':').unwrap_or((call.as_str(), ""));
        let name = format!("projects/{project}/subscriptions/{subscription}");
        if name != shared.config.subscription_name() {
            return Err(GoogleError::not_found(format!(
                "Resource not found (resource={subscription})."
            )));
        }
        match verb {
            "pull" => pull(&shared, parse_body(&body)?),
            "acknowledge" => acknowledge(&shared, parse_body(&body)?),
            "modifyAckDeadline" => modify_ack_deadline(&shared, parse_body(&body)?),
            _ => Err(GoogleError::not_found(format!("Method not found: {verb}"))),
        }
    })();
    match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

fn pull(shared: &Shared, request: PullRequest) -> Result<Value, GoogleError> {
    if request.max_messages <= 0 {
        return Err(GoogleError::invalid_argument(
            "A required argument is missing in the request: (argument=\"max_messages\").",
        ));
    }
    if shared.config.push_endpoint.is_some() {
        // Google's answer (GoogleCloudPlatform/php-docs-samples#335).
        return Err(GoogleError::failed_precondition(
            "This method is not supported for push subscriptions with a defined push configuration.",
        ));
    }
    let now = shared.clock.now();
    let deadline = now + Duration::seconds(shared.config.ack_deadline_secs);
    let mut state = shared.lock();
    let mut received = Vec::new();
    for delivery in state.queue.deliveries.iter_mut() {
        if received.len() as i64 >= request.max_messages.min(1000) {
            break;
        }
        if delivery.visible_at > now {
            continue;
        }
        let ack_id = format!("sandbox-ack-{}", uuid::Uuid::new_v4().simple());
        delivery.ack_id = Some(ack_id.clone());
        delivery.visible_at = deadline;
        delivery.attempts += 1;
        let pushed = envelope(shared, &delivery.message);
        received.push(json!({"ackId": ack_id, "message": pushed["message"]}));
    }
    if received.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({ "receivedMessages": received }))
}

fn acknowledge(shared: &Shared, request: AckRequest) -> Result<Value, GoogleError> {
    if request.ack_ids.is_empty() {
        return Err(GoogleError::invalid_argument(NO_ACK_IDS));
    }
    let mut state = shared.lock();
    state.queue.deliveries.retain(|d| {
        !d.ack_id
            .as_ref()
            .is_some_and(|id| request.ack_ids.contains(id))
    });
    Ok(json!({}))
}

fn modify_ack_deadline(shared: &Shared, request: AckRequest) -> Result<Value, GoogleError> {
    let seconds = request.ack_deadline_seconds.unwrap_or(-1);
    if !(0..=600).contains(&seconds) {
        return Err(GoogleError::invalid_argument(format!(
            "Invalid ack deadline given: {seconds}. The minimum deadline is 0 and the maximum \
             is 600 seconds."
        )));
    }
    if request.ack_ids.is_empty() {
        return Err(GoogleError::invalid_argument(NO_ACK_IDS));
    }
    let visible_at = shared.clock.now() + Duration::seconds(seconds);
    let mut state = shared.lock();
    for delivery in state.queue.deliveries.iter_mut() {
        if delivery
            .ack_id
            .as_ref()
            .is_some_and(|id| request.ack_ids.contains(id))
        {
            delivery.visible_at = visible_at;
        }
    }
    Ok(json!({}))
}
