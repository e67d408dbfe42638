//! Metering API (`/api/usageEvent`, `/api/batchUsageEvent`, `/api/usageEvents`).

use std::collections::HashMap;

use axum::{
    Router,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::{get, post},
};
use serde_json::{Value, json};
use time::{
    Date, Duration, OffsetDateTime, PrimitiveDateTime, Time,
    format_description::well_known::Rfc3339, macros::format_description,
};
use uuid::Uuid;

use super::{
    Shared,
    auth::authorize_publisher,
    config::AzureSandboxConfig,
    errors::{ApiError, metering_forbidden},
    http::{API_VERSION, AppState, json_ok},
    state::{State as Ledger, SubscriptionStatus, UsageRecord, rfc3339},
};

/// Microsoft's limit on usage events per `POST /batchUsageEvent`, enforced by the marketplace
/// itself: a larger batch is refused whole with 400. Source: Microsoft Learn, "Marketplace
/// metered billing APIs", section "Metered billing batch usage event"
/// (https://learn.microsoft.com/partner-center/marketplace/marketplace-metering-service-apis).
const MICROSOFT_BATCH_LIMIT: usize = 25;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/usageEvent", post(usage_event))
        .route("/batchUsageEvent", post(batch_usage_event))
        .route("/usageEvents", get(usage_events))
}

type Q = Query<HashMap<String, String>>;

/// The documented 400 body.
fn bad_request(code: &str, message: &str, target: &str) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        body: json!({
            "message": "One or more errors have occurred.",
            "target": "usageEventRequest",
            "details": [{"message": message, "target": target, "code": code}],
            "code": "BadArgument",
        }),
    }
}

fn guard(
    shared: &Shared,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    match q.get("api-version").map(String::as_str) {
        Some(API_VERSION) => {}
        _ => {
            return Err(bad_request(
                "BadArgument",
                "The api-version query parameter is missing or unsupported.",
                "api-version",
            ));
        }
    }
    authorize_publisher(shared, headers, metering_forbidden)?;
    Ok(())
}

/// Parses the time forms the API takes: RFC 3339, or without offset (UTC), or a bare date.
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let forms: [&[time::format_description::BorrowedFormatItem<'_>]; 3] = [
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]"),
    ];
    for form in forms {
        if let Ok(t) = PrimitiveDateTime::parse(s, form) {
            return Some(t.assume_utc());
        }
    }
    Date::parse(s, format_description!("[year]-[month]-[day]"))
        .ok()
        .map(|d| d.with_time(Time::MIDNIGHT).assume_utc())
}

enum Outcome {
    Accepted(UsageRecord),
    Duplicate(UsageRecord),
    Failed(Rejection),
}

/// Why an event was refused: its `status`/`code`, the message and the field at fault.
struct Rejection {
    status: &'static str,
    message: String,
    target: &'static str,
}

fn reject(status: &'static str, message: impl Into<String>, target: &'static str) -> Rejection {
    Rejection {
        status,
        message: message.into(),
        target,
    }
}

/// A well-formed usage event.
struct UsageEvent<'a> {
    resource: Uuid,
    quantity: f64,
    dimension: &'a str,
    start: OffsetDateTime,
    plan_id: &'a str,
}

/// Applies the metering rules to one event and records it when accepted.
fn evaluate(
    ledger: &mut Ledger,
    config: &AzureSandboxConfig,
    event: &Value,
    now: OffsetDateTime,
) -> Outcome {
    let checked = parse_event(event).and_then(|usage| {
        let offer_id = check_billable(ledger, config, &usage, now)?;
        Ok((usage, offer_id))
    });
    match checked {
        Ok((usage, offer_id)) => record(ledger, &usage, offer_id, now),
        Err(rejection) => Outcome::Failed(rejection),
    }
}

/// The event's fields, each present and well formed.
fn parse_event(event: &Value) -> Result<UsageEvent<'_>, Rejection> {
    if event.get("resourceUri").is_some() {
        return Err(reject(
            "BadArgument",
            "resourceUri is for managed applications; SaaS uses resourceId.",
            "ResourceUri",
        ));
    }
    let resource = event
        .get("resourceId")
        .and_then(Value::as_str)
        .ok_or_else(|| reject("BadArgument", "The resourceId is required.", "ResourceId"))?;
    let resource = Uuid::parse_str(resource)
        .map_err(|_| reject("BadArgument", "The resourceId is not a GUID.", "ResourceId"))?;
    let quantity = event
        .get("quantity")
        .and_then(Value::as_f64)
        .ok_or_else(|| reject("BadArgument", "The quantity is required.", "Quantity"))?;
    if !quantity.is_finite() || quantity <= 0.0 {
        return Err(reject(
            "InvalidQuantity",
            "The quantity must be greater than 0.",
            "Quantity",
        ));
    }
    let dimension = event
        .get("dimension")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| reject("BadArgument", "The dimension is required.", "Dimension"))?;
    let start = event
        .get("effectiveStartTime")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            reject(
                "BadArgument",
                "The effectiveStartTime is required.",
                "EffectiveStartTime",
            )
        })?;
    let start = parse_time(start).ok_or_else(|| {
        reject(
            "BadArgument",
            "The effectiveStartTime is not a valid date-time.",
            "EffectiveStartTime",
        )
    })?;
    let plan_id = event
        .get("planId")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| reject("BadArgument", "The planId is required.", "PlanId"))?;
    Ok(UsageEvent {
        resource,
        quantity,
        dimension,
        start,
        plan_id,
    })
}

/// Whether the subscription may be billed for the event: active at `effectiveStartTime`, on
/// this plan, a dimension of the plan, within the last 24 hours. Returns the offer id.
fn check_billable(
    ledger: &Ledger,
    config: &AzureSandboxConfig,
    usage: &UsageEvent<'_>,
    now: OffsetDateTime,
) -> Result<String, Rejection> {
    let sub = ledger.subscription(usage.resource).ok_or_else(|| {
        reject(
            "ResourceNotFound",
            "The resource was not found.",
            "ResourceId",
        )
    })?;
    let active = match sub.status {
        SubscriptionStatus::Subscribed => true,
        SubscriptionStatus::Unsubscribed => sub.unsubscribed_at.is_some_and(|at| usage.start < at),
        _ => false,
    };
    if !active {
        return Err(reject(
            "ResourceNotActive",
            format!("The subscription is {}.", sub.status.as_str()),
            "ResourceId",
        ));
    }
    if usage.plan_id != sub.plan_id {
        return Err(reject(
            "BadArgument",
            format!(
                "The planId '{}' is not the subscription's plan.",
                usage.plan_id
            ),
            "PlanId",
        ));
    }
    let plan = config
        .plan(&sub.offer_id, &sub.plan_id)
        .ok_or_else(|| reject("BadArgument", "The plan is not available.", "PlanId"))?;
    if !plan.dimensions.iter().any(|d| d.id == usage.dimension) {
        return Err(reject(
            "InvalidDimension",
            format!(
                "The dimension '{}' is not defined for the plan.",
                usage.dimension
            ),
            "Dimension",
        ));
    }
    if usage.start < now - Duration::hours(24) {
        return Err(reject(
            "Expired",
            "The effectiveStartTime is more than 24 hours in the past.",
            "EffectiveStartTime",
        ));
    }
    if usage.start > now + Duration::minutes(5) {
        return Err(reject(
            "BadArgument",
            "The effectiveStartTime is in the future.",
            "EffectiveStartTime",
        ));
    }
    Ok(sub.offer_id.clone())
}

/// Records a billable event, or returns the one already accepted for its resource, dimension
/// and hour.
fn record(
    ledger: &mut Ledger,
    usage: &UsageEvent<'_>,
    offer_id: String,
    now: OffsetDateTime,
) -> Outcome {
    let hour = usage.start.unix_timestamp().div_euclid(3600) * 3600;
    let key = (usage.resource, usage.dimension.to_string(), hour);
    if let Some(existing) = ledger
        .usage_keys
        .get(&key)
        .and_then(|i| ledger.usage.get(*i))
    {
        return Outcome::Duplicate(existing.clone());
    }
    let record = UsageRecord {
        usage_event_id: Uuid::new_v4(),
        message_time: now,
        resource_id: usage.resource,
        quantity: usage.quantity,
        dimension: usage.dimension.to_string(),
        effective_start_time: usage.start,
        plan_id: usage.plan_id.to_string(),
        offer_id,
    };
    ledger.usage_keys.insert(key, ledger.usage.len());
    ledger.usage.push(record.clone());
    Outcome::Accepted(record)
}

fn conflict_body(accepted: &UsageRecord) -> Value {
    json!({
        "additionalInfo": {"acceptedMessage": accepted.to_json("Duplicate")},
        "message": "This usage event already exist.",
        "code": "Conflict",
    })
}

async fn usage_event(
    State(shared): State<AppState>,
    Query(q): Q,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    guard(&shared, &q, &headers)?;
    let event: Value = serde_json::from_slice(&body).map_err(|_| {
        bad_request(
            "BadArgument",
            "The request body is not valid JSON.",
            "usageEventRequest",
        )
    })?;
    let now = shared.now();
    let outcome = evaluate(&mut shared.lock(), &shared.config, &event, now);
    match outcome {
        Outcome::Accepted(record) => Ok(json_ok(record.to_json("Accepted"))),
        Outcome::Duplicate(accepted) => Err(ApiError {
            status: StatusCode::CONFLICT,
            body: conflict_body(&accepted),
        }),
        Outcome::Failed(Rejection {
            status,
            message,
            target,
        }) => Err(bad_request(status, &message, target)),
    }
}

async fn batch_usage_event(
    State(shared): State<AppState>,
    Query(q): Q,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    guard(&shared, &q, &headers)?;
    let body: Value = serde_json::from_slice(&body).map_err(|_| {
        bad_request(
            "BadArgument",
            "The request body is not valid JSON.",
            "batchUsageEventRequest",
        )
    })?;
    let Some(events) = body.get("request").and_then(Value::as_array) else {
        return Err(bad_request(
            "BadArgument",
            "The request array is required.",
            "request",
        ));
    };
    if events.is_empty() || events.len() > MICROSOFT_BATCH_LIMIT {
        return Err(bad_request(
            "BadArgument",
            "A batch carries between 1 and 25 usage events.",
            "request",
        ));
    }
    let now = shared.now();
    let mut results = Vec::with_capacity(events.len());
    {
        let mut ledger = shared.lock();
        for event in events {
            let item = match evaluate(&mut ledger, &shared.config, event, now) {
                Outcome::Accepted(record) => record.to_json("Accepted"),
                Outcome::Duplicate(accepted) => {
                    let mut item = echo(event);
                    item.insert("usageEventId".into(), json!(accepted.usage_event_id));
                    item.insert("status".into(), json!("Duplicate"));
                    item.insert("messageTime".into(), json!("0001-01-01T00:00:00Z"));
                    item.insert("error".into(), conflict_body(&accepted));
                    Value::Object(item)
                }
                Outcome::Failed(Rejection {
                    status, message, ..
                }) => {
                    let mut item = echo(event);
                    item.insert("status".into(), json!(status));
                    item.insert("messageTime".into(), json!(rfc3339(now)));
                    item.insert("error".into(), json!({"message": message, "code": status}));
                    Value::Object(item)
                }
            };
            results.push(item);
        }
    }
    Ok(json_ok(json!({"count": results.len(), "result": results})))
}

/// The submitted fields of an event, where they are well formed.
fn echo(event: &Value) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    if let Some(r) = event
        .get("resourceId")
        .and_then(Value::as_str)
        .and_then(|r| Uuid::parse_str(r).ok())
    {
        out.insert("resourceId".into(), json!(r));
    }
    if let Some(q) = event.get("quantity").and_then(Value::as_f64) {
        out.insert("quantity".into(), json!(q));
    }
    for key in ["dimension", "planId"] {
        if let Some(s) = event.get(key).and_then(Value::as_str) {
            out.insert(key.into(), json!(s));
        }
    }
    if let Some(t) = event
        .get("effectiveStartTime")
        .and_then(Value::as_str)
        .and_then(parse_time)
    {
        out.insert("effectiveStartTime".into(), json!(rfc3339(t)));
    }
    out
}

async fn usage_events(
    State(shared): State<AppState>,
    Query(q): Q,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    guard(&shared, &q, &headers)?;
    let start = q.get("usageStartDate").ok_or_else(|| {
        bad_request(
            "BadArgument",
            "usageStartDate is required.",
            "usageStartDate",
        )
    })?;
    let start = parse_time(start).ok_or_else(|| {
        bad_request(
            "BadArgument",
            "usageStartDate is not a valid date.",
            "usageStartDate",
        )
    })?;
    let now = shared.now();
    let end = match q.get("UsageEndDate").or_else(|| q.get("usageEndDate")) {
        Some(s) => parse_time(s).ok_or_else(|| {
            bad_request(
                "BadArgument",
                "UsageEndDate is not a valid date.",
                "UsageEndDate",
            )
        })?,
        None => now,
    };
    let filter = |key: &str, value: &str| q.get(key).is_none_or(|v| v == value);
    let ledger = shared.lock();
    let rows: Vec<Value> = ledger
        .usage
        .iter()
        .filter(|r| r.effective_start_time >= start && r.effective_start_time <= end)
        .filter_map(|r| {
            let sub = ledger.subscription(r.resource_id)?;
            let azure_sub = sub.azure_subscription_id.to_string();
            if !(filter("offerId", &r.offer_id)
                && filter("planId", &r.plan_id)
                && filter("dimension", &r.dimension)
                && filter("azureSubscriptionId", &azure_sub)
                && filter("reconStatus", "Accepted"))
            {
                return None;
            }
            let offer = shared.config.offer(&r.offer_id);
            let plan = shared.config.plan(&r.offer_id, &r.plan_id);
            let hour = r.effective_start_time.unix_timestamp().div_euclid(3600) * 3600;
            let usage_date =
                OffsetDateTime::from_unix_timestamp(hour).unwrap_or(r.effective_start_time);
            Some(json!({
                "usageDate": rfc3339(usage_date),
                "usageResourceId": r.resource_id,
                "dimension": r.dimension,
                "planId": r.plan_id,
                "planName": plan.map(|p| p.display_name.clone()).unwrap_or_default(),
                "offerId": r.offer_id,
                "offerName": offer.map(|o| o.display_name.clone()).unwrap_or_default(),
                "offerType": "SaaS",
                "azureSubscriptionId": azure_sub,
                "reconStatus": "Accepted",
                "submittedQuantity": r.quantity,
                "processedQuantity": r.quantity,
                "submittedCount": 1,
            }))
        })
        .collect();
    Ok(json_ok(Value::Array(rows)))
}
