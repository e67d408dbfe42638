//! Usage through Service Control v1 (gcp.md §4, S4): `services.check` with the operation,
//! and when it has no `checkErrors`, `services.report`. `consumerId` is the entitlement's
//! `usageReportingId`, verbatim (S4); one operation covers one hour (S4 "Hourly Usage
//! Report"); the same operationId on every resend is what makes a resend safe.

use std::collections::HashMap;

use marketlink_core::{ProviderError, UsageOutcome, UsageRecord};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::{Duration, format_description::well_known::Rfc3339};

use crate::GcpProvider;

/// The operation id of a record: derived from what identifies the hour billed (subscription,
/// dimension, hour), never from when or how often it is sent.
pub fn operation_id(record: &UsageRecord) -> String {
    let mut hash = Sha256::new();
    for part in [
        record.subscription.external_id.as_str(),
        record.dimension.as_str(),
        &record.hour.unix_timestamp().to_string(),
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// CheckError codes (S20) during which the buyer is not served: stop and do not bill (S4).
const NOT_SERVED: &[&str] = &[
    "NOT_FOUND",
    "SERVICE_NOT_ACTIVATED",
    "BILLING_DISABLED",
    "PROJECT_DELETED",
    "PROJECT_INVALID",
    "CONSUMER_INVALID",
];

/// `checkErrors[0]` → the record's outcome; `None` when the check passed.
pub(crate) fn check_outcome(answer: &Value) -> Option<UsageOutcome> {
    let error = answer.get("checkErrors")?.as_array()?.first()?;
    let code = error
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("UNKNOWN")
        .to_owned();
    let detail = error
        .get("detail")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Some(if NOT_SERVED.contains(&code.as_str()) {
        UsageOutcome::NotSubscribed {
            detail: format!("{code}: {detail}"),
        }
    } else if code.ends_with("_UNAVAILABLE") || code == "RESOURCE_EXHAUSTED" {
        UsageOutcome::Retry {
            detail: format!("{code}: {detail}"),
        }
    } else {
        UsageOutcome::Rejected { code, detail }
    })
}

/// A `reportErrors[].status` (google.rpc.Status) → the record's outcome.
pub(crate) fn report_outcome(status: &Value) -> UsageOutcome {
    let code = status.get("code").and_then(Value::as_i64).unwrap_or(2);
    let detail = status
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match code {
        // ALREADY_EXISTS: the operation id, which names the hour, was reported with other
        // content (an identical resend is accepted silently).
        6 => UsageOutcome::QuantityMismatch { detail },
        // CANCELLED, UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNAVAILABLE
        1 | 2 | 4 | 8 | 10 | 13 | 14 => UsageOutcome::Retry { detail },
        // NOT_FOUND, FAILED_PRECONDITION: the consumer is not (or no longer) served.
        5 | 9 => UsageOutcome::NotSubscribed { detail },
        other => UsageOutcome::Rejected {
            code: format!("rpc-{other}"),
            detail,
        },
    }
}

fn rfc3339(at: time::OffsetDateTime) -> Result<String, ProviderError> {
    at.format(&Rfc3339)
        .map_err(|e| ProviderError::retryable(e.to_string()))
}

impl GcpProvider {
    fn service_url(&self, verb: &str) -> String {
        format!(
            "{}/v1/services/{}:{verb}",
            self.config.service_control_url.trim_end_matches('/'),
            self.config.service_name
        )
    }

    /// The operation Service Control takes for one record (S4's example).
    fn operation(&self, record: &UsageRecord, consumer_id: &str) -> Result<Value, ProviderError> {
        let units = record
            .quantity
            .whole_units()
            .ok_or_else(|| ProviderError::Rejected {
                code: "fractional_quantity".into(),
                message: "Google metrics take int64 values".into(),
            })?;
        let metric = if record.dimension.contains('/') {
            record.dimension.clone()
        } else {
            format!("{}/{}", self.config.service_name, record.dimension)
        };
        Ok(json!({
            "operationId": operation_id(record),
            "operationName": "Hourly Usage Report",
            "consumerId": consumer_id,
            "startTime": rfc3339(record.hour)?,
            "endTime": rfc3339(record.hour + Duration::hours(1))?,
            "metricValueSets": [{"metricName": metric, "metricValues": [{"int64Value": units.to_string()}]}],
        }))
    }

    /// `usageReportingId` of each subscription in the batch, read once per call.
    async fn consumer_ids(
        &self,
        records: &[UsageRecord],
    ) -> HashMap<String, Result<String, UsageOutcome>> {
        let mut ids = HashMap::new();
        for record in records {
            let id = &record.subscription.external_id;
            if ids.contains_key(id) {
                continue;
            }
            let found = match self.procurement().entitlement(id).await {
                Ok(e) if !e.usage_reporting_id.is_empty() => Ok(e.usage_reporting_id),
                Ok(_) => Err(UsageOutcome::Rejected {
                    code: "no_usage_reporting_id".into(),
                    detail: "the entitlement's plan is not usage-based".into(),
                }),
                Err(ProviderError::NotFound(detail)) => Err(UsageOutcome::NotSubscribed { detail }),
                Err(e) => Err(UsageOutcome::Retry {
                    detail: e.to_string(),
                }),
            };
            ids.insert(id.clone(), found);
        }
        ids
    }

    pub(crate) async fn report(
        &self,
        records: &[UsageRecord],
    ) -> Result<Vec<UsageOutcome>, ProviderError> {
        let consumers = self.consumer_ids(records).await;
        let mut outcomes: Vec<Option<UsageOutcome>> = vec![None; records.len()];
        let mut checked: Vec<(usize, Value)> = Vec::new();
        for (index, record) in records.iter().enumerate() {
            let consumer = match consumers.get(&record.subscription.external_id) {
                Some(Ok(id)) => id,
                Some(Err(outcome)) => {
                    outcomes[index] = Some(outcome.clone());
                    continue;
                }
                None => continue,
            };
            let operation = match self.operation(record, consumer) {
                Ok(op) => op,
                Err(e) => {
                    outcomes[index] = Some(UsageOutcome::Rejected {
                        code: "invalid".into(),
                        detail: e.to_string(),
                    });
                    continue;
                }
            };
            match self
                .api
                .call(
                    Method::POST,
                    &self.service_url("check"),
                    Some(&json!({"operation": operation})),
                )
                .await
            {
                Ok(answer) => match check_outcome(&answer) {
                    Some(refused) => outcomes[index] = Some(refused),
                    None => checked.push((index, operation)),
                },
                Err(e) => {
                    outcomes[index] = Some(UsageOutcome::Retry {
                        detail: e.to_string(),
                    })
                }
            }
        }
        self.send_report(records, &checked, &mut outcomes).await;
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(UsageOutcome::Retry {
                    detail: "not sent".into(),
                })
            })
            .collect())
    }

    /// One `services.report` for every checked operation; `reportErrors` name the failed ones
    /// (a partial failure is a 200, gcp.md §4 [U]).
    async fn send_report(
        &self,
        records: &[UsageRecord],
        checked: &[(usize, Value)],
        outcomes: &mut [Option<UsageOutcome>],
    ) {
        if checked.is_empty() {
            return;
        }
        let operations: Vec<&Value> = checked.iter().map(|(_, op)| op).collect();
        let body = json!({"operations": operations});
        match self
            .api
            .call(Method::POST, &self.service_url("report"), Some(&body))
            .await
        {
            Ok(answer) => {
                let errors: HashMap<&str, &Value> = answer
                    .get("reportErrors")
                    .and_then(Value::as_array)
                    .map(|list| {
                        list.iter()
                            .filter_map(|e| {
                                Some((e.get("operationId")?.as_str()?, e.get("status")?))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                for (index, _) in checked {
                    let id = operation_id(&records[*index]);
                    outcomes[*index] = Some(match errors.get(id.as_str()) {
                        Some(status) => report_outcome(status),
                        None => UsageOutcome::Accepted {
                            marketplace_id: Some(id.clone()),
                        },
                    });
                }
            }
            Err(e) => {
                for (index, _) in checked {
                    outcomes[*index] = Some(match &e {
                        ProviderError::Rejected { code, message } => UsageOutcome::Rejected {
                            code: code.clone(),
                            detail: message.clone(),
                        },
                        other => UsageOutcome::Retry {
                            detail: other.to_string(),
                        },
                    });
                }
            }
        }
    }
}
