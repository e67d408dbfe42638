//! Service Control v1 `services.check` and `services.report` as a marketplace SaaS product uses
//! them (gcp.md §4; S4 "configure usage reports", S19 reporting timing, S20 CheckError codes):
//! `consumerId` is the entitlement's `usageReportingId` (taken with or without its
//! `project_number:` prefix, gcp.md §4 leaves that open), metric values are proto-JSON int64
//! (strings), and a resent `operationId` with the same content counts once.

use std::{collections::HashMap, sync::Arc};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::HeaderMap,
    response::Response,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use super::{
    Shared,
    auth::authorize,
    errors::{GoogleError, parse_body},
    model::{Entitlement, EntitlementState, parse_timestamp},
    procurement::reply,
};

const SERVICE_CONTROL_SCOPE: &str = "https://www.googleapis.com/auth/servicecontrol";
/// What the sandbox answers as `serviceConfigId` (a rollout id shape, opaque to callers).
const SERVICE_CONFIG_ID: &str = "2026-12-01r0";
const SERVICE_ROLLOUT_ID: &str = "2026-12-01r0";

/// One accepted usage report, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRecord {
    pub operation_id: String,
    pub consumer_id: String,
    pub entitlement_id: String,
    pub metric: String,
    pub value: i64,
    pub start_time: OffsetDateTime,
    pub end_time: OffsetDateTime,
    /// The hour `start_time` falls in.
    pub window_start: OffsetDateTime,
    pub user_labels: HashMap<String, String>,
}

/// A check error a test asked for: `code` is a `CheckError.Code` name (S20) such as
/// `BILLING_DISABLED`; `consumer_id` none matches every consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectedCheckError {
    pub consumer_id: Option<String>,
    pub code: String,
    pub detail: String,
}

#[derive(Debug, Default)]
pub(crate) struct Ledger {
    pub records: Vec<UsageRecord>,
    /// operationId → the operation as first accepted (to tell a resend from a conflict).
    seen: HashMap<String, Value>,
    pub check_errors: Vec<InjectedCheckError>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Operation {
    #[serde(default)]
    operation_id: String,
    #[serde(default)]
    operation_name: String,
    #[serde(default)]
    consumer_id: String,
    #[serde(default)]
    start_time: String,
    #[serde(default)]
    end_time: String,
    #[serde(default)]
    metric_value_sets: Vec<MetricValueSet>,
    #[serde(default)]
    user_labels: HashMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct MetricValueSet {
    metric_name: String,
    #[serde(default)]
    metric_values: Vec<Value>,
}

/// The id without Service Control's `project_number:` prefix.
fn bare(consumer: &str) -> &str {
    consumer.strip_prefix("project_number:").unwrap_or(consumer)
}

fn entitlement_of<'a>(
    entitlements: impl Iterator<Item = &'a Entitlement>,
    consumer: &str,
) -> Option<&'a Entitlement> {
    entitlements
        .filter(|e| e.usage_reporting_id.as_deref().map(bare) == Some(bare(consumer)))
        .max_by_key(|e| e.state != EntitlementState::EntitlementCancelled)
}

/// `POST /v1/services/{service}:{check|report}`.
pub(crate) async fn service_call(
    State(shared): State<Arc<Shared>>,
    Path(call): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    reply((|| {
        authorize(&shared, &headers, &[SERVICE_CONTROL_SCOPE])?;
        let (service, verb) = call.split_once(':').unwrap_or((call.as_str(), ""));
        if service != shared.config.product_domain {
            return Err(GoogleError::permission_denied());
        }
        match verb {
            "check" => check(&shared, parse_body(&body)?),
            "report" => report(&shared, parse_body(&body)?),
            _ => Err(GoogleError::not_found(format!("Method not found: {verb}"))),
        }
    })())
}

#[derive(Debug, Deserialize)]
struct CheckRequest {
    operation: Option<Operation>,
}

fn check(shared: &Shared, request: CheckRequest) -> Result<Value, GoogleError> {
    let Some(operation) = request.operation else {
        return Err(GoogleError::invalid_argument("operation is required."));
    };
    if operation.operation_id.is_empty() || operation.consumer_id.is_empty() {
        return Err(GoogleError::invalid_argument(
            "operation.operationId and operation.consumerId are required.",
        ));
    }
    let state = shared.lock();
    let consumer = operation.consumer_id.as_str();
    let mut errors: Vec<Value> = state
        .usage
        .check_errors
        .iter()
        .filter(|e| {
            e.consumer_id
                .as_deref()
                .is_none_or(|c| bare(c) == bare(consumer))
        })
        .map(|e| json!({"code": e.code, "detail": e.detail}))
        .collect();
    match entitlement_of(state.entitlements.values(), consumer) {
        None => errors.push(
            json!({"code": "CONSUMER_INVALID", "detail": format!("Unknown consumer {consumer}.")}),
        ),
        Some(e) if !serving(e.state) => errors.push(json!({
            "code": "SERVICE_NOT_ACTIVATED",
            "detail": format!("{} is not active for {consumer}.", shared.config.product_domain),
        })),
        Some(_) => {}
    }
    let mut body = json!({"operationId": operation.operation_id, "serviceConfigId": SERVICE_CONFIG_ID, "serviceRolloutId": SERVICE_ROLLOUT_ID});
    if !errors.is_empty() {
        body["checkErrors"] = errors.into();
    }
    Ok(body)
}

/// States in which the buyer has the service.
fn serving(state: EntitlementState) -> bool {
    use EntitlementState::*;
    matches!(
        state,
        EntitlementActive
            | EntitlementPendingCancellation
            | EntitlementPendingPlanChange
            | EntitlementPendingPlanChangeApproval
    )
}

#[derive(Debug, Deserialize)]
struct ReportRequest {
    #[serde(default)]
    operations: Vec<Operation>,
}

/// Accepts what it can; the rest comes back in `reportErrors` with HTTP 200: "a successful RPC
/// status and a non-empty report_errors list indicates a partial success" (ReportResponse
/// reference, google.api.servicecontrol.v1).
fn report(shared: &Shared, request: ReportRequest) -> Result<Value, GoogleError> {
    if request.operations.is_empty() {
        return Err(GoogleError::invalid_argument(
            "operations must not be empty.",
        ));
    }
    let mut report_errors = Vec::new();
    let mut state = shared.lock();
    let state = &mut *state;
    for operation in request.operations {
        let id = operation.operation_id.clone();
        let outcome = validate(shared, &state.entitlements, &operation).and_then(|records| {
            let fingerprint = json!(operation);
            match state.usage.seen.get(&id) {
                Some(first) if *first == fingerprint => Ok(()),
                Some(_) => Err((
                    6,
                    format!("Operation {id} was already reported with other content."),
                )),
                None => {
                    state.usage.seen.insert(id.clone(), fingerprint);
                    state.usage.records.extend(records);
                    Ok(())
                }
            }
        });
        if let Err((code, message)) = outcome {
            report_errors
                .push(json!({"operationId": id, "status": {"code": code, "message": message}}));
        }
    }
    let mut body =
        json!({"serviceConfigId": SERVICE_CONFIG_ID, "serviceRolloutId": SERVICE_ROLLOUT_ID});
    if !report_errors.is_empty() {
        body["reportErrors"] = report_errors.into();
    }
    Ok(body)
}

type Invalid = (i32, String);

fn invalid(message: String) -> Invalid {
    (3, message)
}

/// The ledger records of one operation, or its error (google.rpc.Code number and message).
fn validate(
    shared: &Shared,
    entitlements: &std::collections::BTreeMap<String, Entitlement>,
    op: &Operation,
) -> Result<Vec<UsageRecord>, Invalid> {
    if op.operation_id.is_empty() || op.consumer_id.is_empty() {
        return Err(invalid("operationId and consumerId are required.".into()));
    }
    let (Some(start), Some(end)) = (
        parse_timestamp(&op.start_time),
        parse_timestamp(&op.end_time),
    ) else {
        return Err(invalid(
            "startTime and endTime must be RFC 3339 timestamps.".into(),
        ));
    };
    let now = shared.clock.now();
    if end < start || end > now + Duration::minutes(5) {
        return Err(invalid(
            "The operation's interval is invalid or in the future.".into(),
        ));
    }
    if end < now - Duration::seconds(shared.config.max_report_age_secs) {
        return Err(invalid(format!(
            "Usage ending {} is too old to report.",
            op.end_time
        )));
    }
    let entitlement = entitlement_of(entitlements.values(), &op.consumer_id)
        .ok_or_else(|| invalid(format!("Unknown consumer {}.", op.consumer_id)))?;
    let ended_before_cancel = entitlement.state == EntitlementState::EntitlementCancelled
        && parse_timestamp(&entitlement.update_time).is_some_and(|cancelled| end <= cancelled);
    if !serving(entitlement.state) && !ended_before_cancel {
        return Err((
            9,
            format!("The service is not active for {}.", op.consumer_id),
        ));
    }
    let window_start = start
        .replace_minute(0)
        .and_then(|t| t.replace_second(0))
        .and_then(|t| t.replace_nanosecond(0))
        .unwrap_or(start);
    let mut records = Vec::new();
    for set in &op.metric_value_sets {
        if !shared.config.metrics.contains(&set.metric_name) {
            return Err(invalid(format!("Unknown metric {}.", set.metric_name)));
        }
        for value in &set.metric_values {
            let value = int64_value(value).ok_or_else(|| {
                invalid(format!(
                    "{}: int64Value must be a non-negative integer.",
                    set.metric_name
                ))
            })?;
            records.push(UsageRecord {
                operation_id: op.operation_id.clone(),
                consumer_id: op.consumer_id.clone(),
                entitlement_id: entitlement.id().to_owned(),
                metric: set.metric_name.clone(),
                value,
                start_time: start,
                end_time: end,
                window_start,
                user_labels: op.user_labels.clone(),
            });
        }
    }
    Ok(records)
}

/// `{"int64Value": "150"}` (proto JSON writes int64 as a string; a number is accepted too).
fn int64_value(value: &Value) -> Option<i64> {
    let raw = value.get("int64Value")?;
    let n = match raw {
        Value::String(s) => s.parse::<i64>().ok()?,
        other => other.as_i64()?,
    };
    (n >= 0).then_some(n)
}
