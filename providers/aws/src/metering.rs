//! BatchMeterUsage: hourly usage records, grouped by product, at most [`MAX_BATCH`] a call,
//! outcomes in input order.

use std::collections::BTreeMap;

use aws_sdk_marketplacemetering::{
    primitives::DateTime,
    types::{Tag, UsageAllocation, UsageRecord as AwsUsageRecord, UsageRecordResultStatus},
};
use marketlink_core::{Marketplace, ProviderError, UsageOutcome, UsageRecord};

use crate::{
    AwsProvider,
    config::IdentityMode,
    errors::{AwsFailure, FailureClass},
};

/// BatchMeterUsage accepts 1 to 25 records per call (aws.md, BatchMeterUsage); the provider's
/// declared `UsageRules::max_batch` is this same constant.
pub(crate) const MAX_BATCH: usize = 25;

impl AwsProvider {
    /// BatchMeterUsage for any number of records: grouped by product (one ProductCode or one
    /// product's LicenseArns per call), 25 per call, outcomes returned in input order.
    ///
    /// A call that fails as a whole with a validation exception (TimestampOutOfBounds,
    /// InvalidUsageDimension, ...) is retried record by record, so only the offending records are
    /// `Rejected` (with the exception name as `code`) and the others get their real outcome.
    pub(crate) async fn meter(
        &self,
        records: &[UsageRecord],
    ) -> Result<Vec<UsageOutcome>, ProviderError> {
        let mut outcomes: Vec<Option<UsageOutcome>> = vec![None; records.len()];
        // product code → (input index, AWS record)
        let mut groups: BTreeMap<&str, Vec<(usize, AwsUsageRecord)>> = BTreeMap::new();
        for (i, record) in records.iter().enumerate() {
            match self.to_aws_record(record) {
                Ok(r) => groups
                    .entry(record.subscription.product_code.as_str())
                    .or_default()
                    .push((i, r)),
                Err(outcome) => outcomes[i] = Some(outcome),
            }
        }
        let mut processed_any = false;
        let mut first_failure: Option<ProviderError> = None;
        for (product_code, group) in groups {
            let classic = self
                .config
                .product(product_code)
                .is_some_and(|p| p.identity_mode == IdentityMode::Classic);
            for chunk in group.chunks(MAX_BATCH) {
                match self.meter_chunk(product_code, classic, chunk).await {
                    Ok(results) => {
                        processed_any = true;
                        for (i, outcome) in results {
                            outcomes[i] = Some(outcome);
                        }
                    }
                    Err(failure) => {
                        let detail = failure.message.clone();
                        for (i, _) in chunk {
                            outcomes[*i] = Some(UsageOutcome::Retry {
                                detail: format!("{}: {detail}", failure.code),
                            });
                        }
                        if first_failure.is_none() {
                            first_failure = Some(failure.into_provider_error("BatchMeterUsage"));
                        }
                    }
                }
            }
        }
        // Nothing reached AWS and a call failed as a whole: say so with an error, as the trait
        // asks ("an Err means nothing in the batch is known to have been processed").
        if !processed_any && let Some(err) = first_failure {
            return Err(err);
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| UsageOutcome::Retry {
                    detail: "not sent".into(),
                })
            })
            .collect())
    }

    fn to_aws_record(&self, record: &UsageRecord) -> Result<AwsUsageRecord, UsageOutcome> {
        let reject = |code: &str, detail: String| UsageOutcome::Rejected {
            code: code.to_owned(),
            detail,
        };
        let sub = &record.subscription;
        if sub.marketplace != Marketplace::AWS {
            return Err(reject(
                "WrongMarketplace",
                format!("record for {} sent to AWS", sub.marketplace),
            ));
        }
        let Some(product) = self.config.product(&sub.product_code) else {
            return Err(reject(
                "UnknownProduct",
                format!("product code {} is not in aws.products", sub.product_code),
            ));
        };
        // Last line of defence: ingest refuses fractional quantities and allocations on AWS
        // (`UsageRules::whole_units`, code `whole_units_only`), and whole events sum to whole
        // hours, so only events accepted before that check can still be dead-lettered here.
        let quantity = to_whole(record.quantity).map_err(|detail| {
            reject(
                "FractionalQuantity",
                format!("{detail}; this AWS SDK sends whole units only (no QuantityAsDecimal)"),
            )
        })?;
        let mut builder = AwsUsageRecord::builder()
            .timestamp(DateTime::from_secs(record.hour.unix_timestamp()))
            .dimension(&record.dimension)
            .quantity(quantity);
        builder = match product.identity_mode {
            IdentityMode::Classic => builder.customer_identifier(&sub.customer_id),
            IdentityMode::Concurrent => {
                let (Some(account), Some(arn)) = (&sub.customer_account_id, &sub.license_arn)
                else {
                    return Err(reject(
                        "MissingLicense",
                        "a concurrent-agreements record needs CustomerAWSAccountId and LicenseArn"
                            .into(),
                    ));
                };
                builder.customer_aws_account_id(account).license_arn(arn)
            }
        };
        for a in &record.allocations {
            let q = to_whole(a.quantity).map_err(|detail| {
                reject("FractionalQuantity", format!("usage allocation: {detail}"))
            })?;
            let mut alloc = UsageAllocation::builder().allocated_usage_quantity(q);
            for (k, v) in &a.tags {
                let tag = Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .map_err(|e| reject("InvalidTag", e.to_string()))?;
                alloc = alloc.tags(tag);
            }
            builder = builder.usage_allocations(
                alloc
                    .build()
                    .map_err(|e| reject("InvalidUsageAllocations", e.to_string()))?,
            );
        }
        builder
            .build()
            .map_err(|e| reject("InvalidUsageRecord", e.to_string()))
    }

    /// One BatchMeterUsage call (with retries); a validation failure falls back to one call per
    /// record. Returns the outcome of every record of the chunk.
    async fn meter_chunk(
        &self,
        product_code: &str,
        classic: bool,
        chunk: &[(usize, AwsUsageRecord)],
    ) -> Result<Vec<(usize, UsageOutcome)>, AwsFailure> {
        match self.batch_call(product_code, classic, chunk).await {
            Ok(v) => Ok(v),
            Err(f) if f.class == FailureClass::Rejected && chunk.len() > 1 => {
                tracing::info!(
                    code = %f.code,
                    records = chunk.len(),
                    "BatchMeterUsage refused the batch; isolating the record(s) one by one"
                );
                let mut out = Vec::with_capacity(chunk.len());
                for one in chunk {
                    match self
                        .batch_call(product_code, classic, std::slice::from_ref(one))
                        .await
                    {
                        Ok(v) => out.extend(v),
                        Err(f) if f.class == FailureClass::Rejected => out.push((
                            one.0,
                            UsageOutcome::Rejected {
                                code: f.code,
                                detail: f.message,
                            },
                        )),
                        Err(f) => out.push((
                            one.0,
                            UsageOutcome::Retry {
                                detail: format!("{}: {}", f.code, f.message),
                            },
                        )),
                    }
                }
                Ok(out)
            }
            Err(f) if f.class == FailureClass::Rejected => {
                // A single record refused as a whole.
                Ok(chunk
                    .iter()
                    .map(|(i, _)| {
                        (
                            *i,
                            UsageOutcome::Rejected {
                                code: f.code.clone(),
                                detail: f.message.clone(),
                            },
                        )
                    })
                    .collect())
            }
            Err(f) => Err(f),
        }
    }

    async fn batch_call(
        &self,
        product_code: &str,
        classic: bool,
        chunk: &[(usize, AwsUsageRecord)],
    ) -> Result<Vec<(usize, UsageOutcome)>, AwsFailure> {
        let aws_records: Vec<AwsUsageRecord> = chunk.iter().map(|(_, r)| r.clone()).collect();
        let out = self
            .retry
            .run("BatchMeterUsage", || async {
                let mut call = self
                    .metering
                    .batch_meter_usage()
                    .set_usage_records(Some(aws_records.clone()));
                if classic {
                    call = call.product_code(product_code);
                }
                call.send().await.map_err(AwsFailure::from_sdk)
            })
            .await?;
        let mut pending: Vec<Option<&(usize, AwsUsageRecord)>> = chunk.iter().map(Some).collect();
        let mut take = |r: Option<&AwsUsageRecord>| -> Option<usize> {
            let r = r?;
            let pos = pending
                .iter()
                .position(|p| p.is_some_and(|(_, sent)| same_record(sent, r)))?;
            pending[pos].take().map(|(i, _)| *i)
        };
        let mut results = Vec::with_capacity(chunk.len());
        for res in out.results() {
            let Some(i) = take(res.usage_record()) else {
                tracing::warn!("BatchMeterUsage returned a result for a record we did not send");
                continue;
            };
            let outcome = match res.status() {
                Some(UsageRecordResultStatus::Success) => UsageOutcome::Accepted {
                    marketplace_id: res.metering_record_id().map(str::to_owned),
                },
                Some(UsageRecordResultStatus::DuplicateRecord) => UsageOutcome::QuantityMismatch {
                    detail: "DuplicateRecord: AWS already holds a record for this customer, dimension and hour with a different quantity; this one is not billed".into(),
                },
                Some(UsageRecordResultStatus::CustomerNotSubscribed) => {
                    UsageOutcome::NotSubscribed {
                        detail: "CustomerNotSubscribed: no active agreement (or the account is suspended)".into(),
                    }
                }
                other => UsageOutcome::Retry {
                    detail: format!("unknown BatchMeterUsage status {other:?}"),
                },
            };
            results.push((i, outcome));
        }
        for r in out.unprocessed_records() {
            if let Some(i) = take(Some(r)) {
                results.push((
                    i,
                    UsageOutcome::Retry {
                        detail: "UnprocessedRecords: AWS did not process the record this time"
                            .into(),
                    },
                ));
            }
        }
        for (i, _) in pending.into_iter().flatten() {
            results.push((
                *i,
                UsageOutcome::Retry {
                    detail: "BatchMeterUsage returned no result for the record".into(),
                },
            ));
        }
        Ok(results)
    }
}

/// A whole-unit quantity for the AWS `Quantity` (i32) field.
fn to_whole(q: marketlink_core::Quantity) -> Result<i32, String> {
    let units = q
        .whole_units()
        .ok_or_else(|| format!("quantity {q} is not a whole number of units"))?;
    i32::try_from(units).map_err(|_| format!("quantity {q} exceeds 2147483647"))
}

/// Matches a result's echoed UsageRecord to the record we sent.
fn same_record(a: &AwsUsageRecord, b: &AwsUsageRecord) -> bool {
    a.dimension() == b.dimension()
        && a.timestamp().secs() == b.timestamp().secs()
        && a.customer_identifier() == b.customer_identifier()
        && a.customer_aws_account_id() == b.customer_aws_account_id()
        && a.license_arn() == b.license_arn()
}
