//! `POST /api/v1/usage`: the vendor's product reports usage, one event or a batch.
//!
//! Answers 202 only once the whole batch is committed; a batch is stored entirely or not at
//! all. Body: an event object, an array of events, or `{"events": [...]}`. An event:
//! `{"subscription_id" | ("tenant_id" + "product"), "dimension", "quantity", "timestamp"
//! (RFC 3339), "idempotency_key"?, "allocations"?: [{"quantity", "tags": {"k": "v"}}]}`.

use std::collections::BTreeMap;

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::post,
};
use marketlink_core::{ProductId, Quantity, UsageAllocation};
use marketlink_engine::metering::{IngestError, IngestErrorKind, UsageInput};
use serde::Deserialize;
use serde_json::Value;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::ErrorBody;
use crate::{AppError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/usage", post(report))
}

/// One usage event. Name the subscription by `subscription_id`, or by `tenant_id` and
/// `product` (the catalog id).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UsageEvent)]
pub(crate) struct RawEvent {
    #[schema(format = Uuid)]
    subscription_id: Option<String>,
    #[schema(format = Uuid)]
    tenant_id: Option<String>,
    product: Option<String>,
    dimension: String,
    /// Not negative; a number or a decimal string such as `"1.5"`. Whole units only where
    /// the marketplace bills whole units (AWS Marketplace): a fraction there is refused.
    #[schema(value_type = f64, example = 120)]
    quantity: Value,
    /// RFC 3339, e.g. `2026-11-25T10:42:00Z`.
    #[schema(format = DateTime)]
    timestamp: String,
    /// The same key twice is stored once.
    idempotency_key: Option<String>,
    /// AWS cost-allocation tags: parts of `quantity` with their tags.
    #[serde(default)]
    allocations: Vec<RawAllocation>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UsageAllocation)]
pub(crate) struct RawAllocation {
    #[schema(value_type = f64)]
    quantity: Value,
    tags: BTreeMap<String, String>,
}

/// One event, an array of events, or `{"events": [...]}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[expect(
    dead_code,
    reason = "describes the body; the handler parses it by hand"
)]
pub(crate) enum UsageBody {
    One(RawEvent),
    Many(Vec<RawEvent>),
    Wrapped(UsageBatch),
}

#[derive(Deserialize, utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "describes the body; the handler parses it by hand"
)]
pub(crate) struct UsageBatch {
    events: Vec<RawEvent>,
}

/// What a usage report stored (the engine's `IngestOutcome`).
#[derive(utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "describes the answer, serialised from the engine's type"
)]
pub(crate) struct UsageAccepted {
    /// Events stored and counted.
    accepted: u64,
    /// Events whose idempotency key was already stored: ignored.
    duplicates: u64,
}

/// Reports usage: one event, an array, or `{"events": [...]}`; stored entirely or not at all.
#[utoipa::path(
    post,
    path = "/api/v1/usage",
    tag = "usage",
    request_body = UsageBody,
    responses(
        (status = 202, description = "The whole batch is committed and will be billed", body = UsageAccepted),
        (status = 400, description = "Malformed JSON, bad quantity, a fraction where the marketplace bills whole units only (`whole_units_only`), an hour taken past what the marketplace bills for one hour (`hourly_quantity_limit`), unknown dimension, timestamp out of window, batch too large, subscription not active", body = ErrorBody),
        (status = 401, description = "No or an invalid API key", body = ErrorBody),
        (status = 403, description = "The key lacks the `usage:write` scope", body = ErrorBody),
        (status = 404, description = "Unknown subscription", body = ErrorBody),
        (status = 409, description = "Usage for an hour already sent", body = ErrorBody),
    ),
)]
pub(crate) async fn report(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, AppError> {
    let caller = super::authorize(&state, &headers).await?;
    let inputs = parse(&body)?;
    // A tenant-scoped key reports only for its own tenant; anything else looks missing.
    let tenant_scope = match &caller {
        super::UsageCaller::Key(key) => key.tenant_id,
        super::UsageCaller::Configured => None,
    };
    let outcome = state
        .engine
        .ingest_usage(&inputs, tenant_scope)
        .await
        .map_err(ingest_error)?;
    Ok((StatusCode::ACCEPTED, Json(outcome)))
}

pub(crate) fn parse(body: &[u8]) -> Result<Vec<UsageInput>, AppError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| AppError::bad_request("malformed_json", format!("malformed JSON: {e}")))?;
    let events = match value {
        Value::Array(events) => events,
        Value::Object(mut map) if map.contains_key("events") => match map.remove("events") {
            Some(Value::Array(events)) => events,
            _ => {
                return Err(AppError::bad_request(
                    "invalid_event",
                    "`events` must be an array of events",
                ));
            }
        },
        single @ Value::Object(_) => vec![single],
        _ => {
            return Err(AppError::bad_request(
                "invalid_event",
                "expected an event object, an array of events or {\"events\": [...]}",
            ));
        }
    };
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            parse_event(event)
                .map_err(|(code, m)| AppError::bad_request(code, format!("event {i}: {m}")))
        })
        .collect()
}

fn parse_event(value: Value) -> Result<UsageInput, (&'static str, String)> {
    let raw: RawEvent =
        serde_json::from_value(value).map_err(|e| ("invalid_event", e.to_string()))?;
    let quantity = |v: Value| {
        Quantity::deserialize(v).map_err(|e| ("invalid_quantity", format!("quantity: {e}")))
    };
    let timestamp = OffsetDateTime::parse(&raw.timestamp, &Rfc3339).map_err(|e| {
        (
            "invalid_timestamp",
            format!("timestamp must be RFC 3339 (e.g. 2026-11-25T10:15:00Z): {e}"),
        )
    })?;
    let mut allocations = Vec::with_capacity(raw.allocations.len());
    for a in raw.allocations {
        allocations.push(UsageAllocation {
            quantity: quantity(a.quantity)?,
            tags: a.tags.into_iter().collect(),
        });
    }
    Ok(UsageInput {
        subscription_id: parse_id("subscription_id", raw.subscription_id)?,
        tenant_id: parse_id("tenant_id", raw.tenant_id)?,
        product: raw.product.map(ProductId::new),
        dimension: raw.dimension,
        quantity: quantity(raw.quantity)?,
        timestamp,
        idempotency_key: raw.idempotency_key,
        allocations,
    })
}

fn parse_id<T: std::str::FromStr>(
    name: &str,
    value: Option<String>,
) -> Result<Option<T>, (&'static str, String)> {
    value
        .map(|s| s.parse())
        .transpose()
        .map_err(|_| ("invalid_id", format!("`{name}` is not a UUID")))
}

fn ingest_error(error: IngestError) -> AppError {
    let code = error.code();
    let message = error.to_string();
    match error.kind {
        IngestErrorKind::UnknownSubscription => AppError::NotFound("subscription"),
        IngestErrorKind::HourAlreadySent(_) => AppError::Conflict(message),
        IngestErrorKind::Store(store) => AppError::from(store),
        _ => AppError::bad_request(code, message),
    }
}
