//! Usage through `POST /batchUsageEvent` (at most 25 events per call), one outcome per record in
//! input order.
//!
//! Per-item statuses:
//! - `Accepted` → `Accepted { usageEventId }`.
//! - `Duplicate` → `AlreadyAccepted` when the accepted event (`error.additionalInfo.
//!   acceptedMessage`) has our quantity, else `QuantityMismatch` (the hour was billed with another
//!   quantity: a discrepancy for people to look at).
//! - `ResourceNotActive` → `NotSubscribed`.
//! - `Error` → `Retry`: Microsoft's generic server-side failure for one item; its guidance is to
//!   retry (and to fold the quantity into a later hour if it persists). The outbox's attempt limit
//!   bounds the retries.
//! - `Expired`, `ResourceNotFound`, `ResourceNotAuthorized`, `InvalidDimension`,
//!   `InvalidQuantity`, `BadArgument` and anything unknown → `Rejected { code: status }`.
//!
//! Whole-call failures: 401/403 → `Configuration`, 429/5xx/transport → `Retryable` (with
//! `Retry-After`), other 4xx → every record of that call `Rejected`. When an error hits a later
//! chunk after earlier chunks were processed, the earlier outcomes are kept and the remaining
//! records get `Retry` (an `Err` would claim nothing was processed).

use std::collections::{HashMap, VecDeque};

use marketlink_core::{ProviderError, Quantity, UsageOutcome, UsageRecord};
use reqwest::Method;
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{client::ApiClient, model::parse_time};

/// Largest batch the API takes (azure.md, `batchUsageEvent`: up to 25 events); the provider's
/// declared `UsageRules::max_batch` is this same constant.
pub const MAX_BATCH: usize = 25;

/// The hour a record belongs to, truncated and in UTC.
fn hour_start(t: OffsetDateTime) -> OffsetDateTime {
    let utc = t.to_offset(time::UtcOffset::UTC);
    let secs = utc.unix_timestamp().div_euclid(3600) * 3600;
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(utc)
}

/// The key matching a result item to its request: (resource, dimension, hour).
type Key = (String, String, i64);

fn key_of(resource: &str, dimension: &str, hour: OffsetDateTime) -> Key {
    (
        resource.to_ascii_lowercase(),
        dimension.to_owned(),
        hour_start(hour).unix_timestamp(),
    )
}

fn event_body(record: &UsageRecord, plan_id: &str) -> Result<Value, String> {
    let start = hour_start(record.hour)
        .format(&Rfc3339)
        .map_err(|e| format!("formatting the hour: {e}"))?;
    Ok(json!({
        "resourceId": record.subscription.external_id,
        "quantity": record.quantity.as_f64(),
        "dimension": record.dimension,
        "effectiveStartTime": start,
        "planId": plan_id,
    }))
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Maps one result item to an outcome for `record`.
fn outcome(record: &UsageRecord, item: &Value) -> UsageOutcome {
    let status = text(item, "status").unwrap_or("Unknown");
    let error = item.get("error").cloned().unwrap_or(Value::Null);
    let detail = || {
        let (code, message) = crate::http::error_detail(&error);
        let message = message.unwrap_or_else(|| status.to_owned());
        match code {
            Some(code) if code != status => format!("{code}: {message}"),
            _ => message,
        }
    };
    match status {
        "Accepted" => UsageOutcome::Accepted {
            marketplace_id: text(item, "usageEventId").map(str::to_owned),
        },
        "Duplicate" => {
            let accepted = error
                .get("additionalInfo")
                .and_then(|a| a.get("acceptedMessage"))
                .cloned()
                .unwrap_or(Value::Null);
            let id = text(&accepted, "usageEventId")
                .or_else(|| text(item, "usageEventId"))
                .map(str::to_owned);
            match accepted.get("quantity").and_then(Value::as_f64) {
                Some(q) if !same_quantity(q, record.quantity) => UsageOutcome::QuantityMismatch {
                    detail: format!(
                        "the marketplace already accepted {q} for {} {} at {} (usage event {}); we counted {}",
                        record.subscription.external_id,
                        record.dimension,
                        hour_start(record.hour).format(&Rfc3339).unwrap_or_default(),
                        id.as_deref().unwrap_or("?"),
                        record.quantity
                    ),
                },
                _ => UsageOutcome::AlreadyAccepted { marketplace_id: id },
            }
        }
        "ResourceNotActive" => UsageOutcome::NotSubscribed { detail: detail() },
        "Error" => UsageOutcome::Retry { detail: detail() },
        other => UsageOutcome::Rejected {
            code: other.to_owned(),
            detail: detail(),
        },
    }
}

fn same_quantity(accepted: f64, ours: Quantity) -> bool {
    match Quantity::from_f64(accepted) {
        Ok(q) => q == ours,
        Err(_) => (accepted - ours.as_f64()).abs() < 1e-9,
    }
}

/// Sends `records` in batches of 25.
pub(crate) async fn report(
    api: &ApiClient,
    records: &[UsageRecord],
) -> Result<Vec<UsageOutcome>, ProviderError> {
    let mut outcomes: Vec<Option<UsageOutcome>> = vec![None; records.len()];
    // Records without a plan cannot be sent (Azure requires planId): refused locally.
    let mut sendable: Vec<(usize, Value)> = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let Some(plan) = record.plan_id.as_deref().filter(|p| !p.is_empty()) else {
            outcomes[i] = Some(UsageOutcome::Rejected {
                code: "missing_plan".into(),
                detail: "Azure usage events need the subscription's planId".into(),
            });
            continue;
        };
        match event_body(record, plan) {
            Ok(body) => sendable.push((i, body)),
            Err(detail) => {
                outcomes[i] = Some(UsageOutcome::Rejected {
                    code: "invalid_record".into(),
                    detail,
                });
            }
        }
    }
    let mut processed_any = false;
    let mut failure: Option<ProviderError> = None;
    for chunk in sendable.chunks(MAX_BATCH) {
        if let Some(error) = &failure {
            for (i, _) in chunk {
                outcomes[*i] = Some(UsageOutcome::Retry {
                    detail: format!("not sent: an earlier batch failed: {error}"),
                });
            }
            continue;
        }
        match send_chunk(api, records, chunk).await {
            Ok(results) => {
                processed_any = true;
                for (i, outcome) in results {
                    outcomes[i] = Some(outcome);
                }
            }
            Err(error) if !processed_any => return Err(error),
            Err(error) => {
                for (i, _) in chunk {
                    outcomes[*i] = Some(UsageOutcome::Retry {
                        detail: error.to_string(),
                    });
                }
                failure = Some(error);
            }
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or(UsageOutcome::Retry {
                detail: "no result for this record".into(),
            })
        })
        .collect())
}

async fn send_chunk(
    api: &ApiClient,
    records: &[UsageRecord],
    chunk: &[(usize, Value)],
) -> Result<Vec<(usize, UsageOutcome)>, ProviderError> {
    let what = "batch usage event";
    let body = json!({ "request": chunk.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>() });
    let url = api.url(&["batchUsageEvent"])?;
    let reply = api
        .send(Method::POST, url, Some(&body), &[], None, what)
        .await?;
    if !reply.status.is_success() {
        let error = reply.into_error(what);
        return match error {
            ProviderError::Rejected { code, message } => Ok(chunk
                .iter()
                .map(|(i, _)| {
                    (
                        *i,
                        UsageOutcome::Rejected {
                            code: code.clone(),
                            detail: message.clone(),
                        },
                    )
                })
                .collect()),
            // 404 on the metering endpoint is our base URL, not the record.
            ProviderError::NotFound(m) => Err(ProviderError::Configuration(m)),
            other => Err(other),
        };
    }
    let response = reply.json();
    let results: Vec<Value> = response
        .get("result")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // Match items to requests by (resource, dimension, hour); positions as a fallback.
    let mut by_key: HashMap<Key, VecDeque<Value>> = HashMap::new();
    let mut unkeyed: VecDeque<Value> = VecDeque::new();
    for item in &results {
        let key = match (
            text(item, "resourceId"),
            text(item, "dimension"),
            text(item, "effectiveStartTime").and_then(parse_time),
        ) {
            (Some(r), Some(d), Some(t)) => Some(key_of(r, d, t)),
            _ => None,
        };
        match key {
            Some(key) => by_key.entry(key).or_default().push_back(item.clone()),
            None => unkeyed.push_back(item.clone()),
        }
    }
    let mut out = Vec::with_capacity(chunk.len());
    for (position, (i, _)) in chunk.iter().enumerate() {
        let record = &records[*i];
        let key = key_of(
            &record.subscription.external_id,
            &record.dimension,
            record.hour,
        );
        let item = by_key
            .get_mut(&key)
            .and_then(VecDeque::pop_front)
            .or_else(|| unkeyed.pop_front())
            .or_else(|| (results.len() == chunk.len()).then(|| results[position].clone()));
        let outcome = match item {
            Some(item) => outcome(record, &item),
            None => UsageOutcome::Retry {
                detail: "the marketplace returned no result for this event".into(),
            },
        };
        out.push((*i, outcome));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use marketlink_core::{ExternalRef, Marketplace};
    use time::macros::datetime;

    use super::*;

    fn record(q: &str) -> UsageRecord {
        UsageRecord {
            id: uuid::Uuid::new_v4(),
            subscription: ExternalRef {
                marketplace: Marketplace::AZURE,
                external_id: "s1".into(),
                product_code: "o".into(),
                customer_id: "t".into(),
                customer_account_id: None,
                license_arn: None,
            },
            plan_id: Some("basic".into()),
            dimension: "api_calls".into(),
            hour: datetime!(2026-01-01 10:00 UTC),
            quantity: q.parse().unwrap(),
            allocations: vec![],
        }
    }

    #[test]
    fn hours_are_truncated_to_utc() {
        assert_eq!(
            hour_start(datetime!(2026-01-01 10:59:59 +02:00)),
            datetime!(2026-01-01 08:00 UTC)
        );
        let body = event_body(&record("1.5"), "basic").unwrap();
        assert_eq!(body["effectiveStartTime"], "2026-01-01T10:00:00Z");
        assert_eq!(body["quantity"], 1.5);
    }

    #[test]
    fn duplicate_outcomes() {
        let dup = |q: f64| {
            json!({"status": "Duplicate", "usageEventId": "u1",
                "error": {"additionalInfo": {"acceptedMessage": {"usageEventId": "u0", "quantity": q}}, "code": "Conflict"}})
        };
        assert_eq!(
            outcome(&record("2"), &dup(2.0)),
            UsageOutcome::AlreadyAccepted {
                marketplace_id: Some("u0".into())
            }
        );
        assert!(matches!(
            outcome(&record("2"), &dup(3.0)),
            UsageOutcome::QuantityMismatch { .. }
        ));
        assert!(matches!(
            outcome(
                &record("2"),
                &json!({"status": "Error", "error": {"message": "boom"}})
            ),
            UsageOutcome::Retry { .. }
        ));
        assert!(matches!(
            outcome(&record("2"), &json!({"status": "Expired", "error": {"code": "Expired", "message": "old"}})),
            UsageOutcome::Rejected { code, .. } if code == "Expired"
        ));
    }
}
