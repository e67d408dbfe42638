//! AWSMPMeteringService: ResolveCustomer and BatchMeterUsage (awsJson1.1). A batch is
//! validated whole first (`records`), then each record is billed to its agreement once per
//! product, dimension, hour and customer.

mod records;

use serde_json::{Value, json};
use time::{Duration, OffsetDateTime, Time};

use self::records::{Checked, Identity, check_record, usage_records};
use super::{
    AwsSandbox, IdentityMode, ProductConfig,
    input::{opt_str, req_str},
    state::{MeteredRecord, SandboxState},
    wire::AwsError,
};

fn hour_of(ts: OffsetDateTime) -> OffsetDateTime {
    ts.replace_time(Time::from_hms(ts.hour(), 0, 0).unwrap_or(Time::MIDNIGHT))
}

impl AwsSandbox {
    pub(super) fn metering(&self, op: &str, input: &Value) -> Result<(Value, String), AwsError> {
        match op {
            "ResolveCustomer" => self.resolve_customer(input),
            "BatchMeterUsage" => self.batch_meter_usage(input),
            "MeterUsage" | "RegisterUsage" => Err(AwsError::bad_request(
                "InvalidProductCodeException",
                format!("{op} is for AMI/container products; SaaS products use BatchMeterUsage"),
            )),
            _ => Err(AwsError::bad_request(
                "UnknownOperationException",
                format!("Unknown operation {op}"),
            )),
        }
    }

    fn resolve_customer(&self, input: &Value) -> Result<(Value, String), AwsError> {
        let token = req_str(input, "RegistrationToken", "ValidationException")?;
        if token.is_empty() {
            return Err(AwsError::bad_request(
                "InvalidTokenException",
                "Registration token is invalid",
            ));
        }
        let st = self.lock();
        let ag = st
            .tokens
            .get(token)
            .and_then(|id| st.agreements.get(id))
            .ok_or_else(|| {
                AwsError::bad_request("InvalidTokenException", "Registration token is invalid")
            })?;
        if self.now() - ag.created_at > Duration::seconds(self.config.token_ttl_secs) {
            return Err(AwsError::bad_request(
                "ExpiredTokenException",
                "Registration token is expired",
            ));
        }
        let mode = self
            .config
            .product(&ag.product_code)
            .map(|p| p.identity_mode)
            .unwrap_or(IdentityMode::Classic);
        let customer_identifier = match mode {
            IdentityMode::Classic => Some(ag.customer_identifier.clone()),
            IdentityMode::Concurrent => None,
        };
        let out = json!({
            "CustomerIdentifier": customer_identifier,
            "CustomerAWSAccountId": ag.buyer_account_id,
            "ProductCode": ag.product_code,
            "LicenseArn": ag.license_arn,
            "Metadata": {"AgreementId": ag.agreement_id},
        });
        let summary = format!(
            "{} → account {} ({})",
            ag.product_code, ag.buyer_account_id, ag.agreement_id
        );
        Ok((out, summary))
    }

    fn batch_meter_usage(&self, input: &Value) -> Result<(Value, String), AwsError> {
        let records = usage_records(input)?;
        let request_product = opt_str(input, "ProductCode")?;
        let now = self.now();
        let mut st = self.lock();
        let Some(product) = self.metered_product(&st, request_product, records)? else {
            return Ok((
                json!({"Results": [], "UnprocessedRecords": []}),
                "0 records".into(),
            ));
        };
        // Validate the whole batch first: any invalid record fails the request.
        let checked = records
            .iter()
            .map(|r| check_record(&st, product, request_product, r, now))
            .collect::<Result<Vec<_>, _>>()?;
        let mut results = Vec::with_capacity(records.len());
        let (mut ok, mut dup, mut unsub) = (0, 0, 0);
        for (r, c) in records.iter().zip(checked) {
            let status = meter_record(&mut st, product, r, c, now)?;
            match status {
                RecordStatus::Success(_) => ok += 1,
                RecordStatus::DuplicateRecord => dup += 1,
                RecordStatus::CustomerNotSubscribed => unsub += 1,
            }
            results.push(status.result(r));
        }
        self.persist(&st);
        let summary = format!(
            "{}: {} records, {ok} Success, {dup} DuplicateRecord, {unsub} CustomerNotSubscribed",
            product.product_code,
            records.len()
        );
        Ok((
            json!({"Results": results, "UnprocessedRecords": []}),
            summary,
        ))
    }

    /// Which product does this call meter? `ProductCode`, or the LicenseArns' product (all of
    /// them the same). `None` for an empty batch without `ProductCode`.
    fn metered_product(
        &self,
        st: &SandboxState,
        request_product: Option<&str>,
        records: &[Value],
    ) -> Result<Option<&ProductConfig>, AwsError> {
        let mut product_code: Option<String> = request_product.map(str::to_owned);
        for r in records {
            if let Some(arn) = opt_str(r, "LicenseArn")? {
                let holders: Vec<_> = st
                    .agreements
                    .values()
                    .filter(|a| a.license_arn == arn)
                    .collect();
                let Some(ag) = holders.first() else {
                    return Err(AwsError::bad_request(
                        "InvalidLicenseException",
                        format!("LicenseArn {arn} is not valid"),
                    ));
                };
                // A licence a renewal or replacement took over with a new LicenseArn is no
                // longer active: "usage is within the license activation period" fails.
                if holders.iter().all(|a| a.license_ended) {
                    return Err(AwsError::bad_request(
                        "InvalidLicenseException",
                        format!(
                            "Usage for LicenseArn {arn} is outside the license activation period"
                        ),
                    ));
                }
                match &product_code {
                    Some(p) if *p != ag.product_code => {
                        return Err(AwsError::bad_request(
                            "InvalidLicenseException",
                            "All LicenseArns of a request must belong to one product",
                        ));
                    }
                    _ => product_code = Some(ag.product_code.clone()),
                }
            }
        }
        match &product_code {
            Some(code) => self.config.product(code).map(Some).ok_or_else(|| {
                AwsError::bad_request(
                    "InvalidProductCodeException",
                    format!("Product code {code} is not valid"),
                )
            }),
            None if records.is_empty() => Ok(None),
            None => Err(AwsError::bad_request(
                "InvalidProductCodeException",
                "ProductCode is required when the usage records carry no LicenseArn",
            )),
        }
    }
}

/// What happened to one record of the batch.
enum RecordStatus {
    /// Accepted now or before with the same quantity (the record id).
    Success(String),
    /// Same product, dimension, hour and customer already metered with another quantity.
    DuplicateRecord,
    /// No live agreement bills the record.
    CustomerNotSubscribed,
}

impl RecordStatus {
    fn result(&self, r: &Value) -> Value {
        match self {
            RecordStatus::Success(id) => {
                json!({"UsageRecord": r, "MeteringRecordId": id, "Status": "Success"})
            }
            RecordStatus::DuplicateRecord => {
                json!({"UsageRecord": r, "Status": "DuplicateRecord"})
            }
            RecordStatus::CustomerNotSubscribed => {
                json!({"UsageRecord": r, "Status": "CustomerNotSubscribed"})
            }
        }
    }
}

/// Bills a checked record to its agreement's ledger, once per dedup key.
fn meter_record(
    st: &mut SandboxState,
    product: &ProductConfig,
    r: &Value,
    c: Checked,
    now: OffsetDateTime,
) -> Result<RecordStatus, AwsError> {
    let dimension = opt_str(r, "Dimension")?.unwrap_or_default();
    let id = Identity::of(r)?;
    let Some(agreement_id) = billed_agreement(st, product, &id) else {
        return Ok(RecordStatus::CustomerNotSubscribed);
    };
    let hour = hour_of(c.timestamp);
    let key = (
        product.product_code.clone(),
        dimension.to_owned(),
        hour,
        id.customer_identifier.map(str::to_owned),
        id.account.map(str::to_owned),
        id.license_arn.map(str::to_owned),
    );
    let existing = st
        .ledger_find(&key)
        .map(|m| (m.quantity.clone(), m.metering_record_id.clone()));
    Ok(match existing {
        Some((quantity, record_id)) if quantity == c.quantity => RecordStatus::Success(record_id),
        Some(_) => RecordStatus::DuplicateRecord,
        None => {
            let record_id = uuid::Uuid::new_v4().to_string();
            st.ledger_push(MeteredRecord {
                metering_record_id: record_id.clone(),
                product_code: product.product_code.clone(),
                agreement_id,
                customer_identifier: id.customer_identifier.map(str::to_owned),
                customer_aws_account_id: id.account.map(str::to_owned),
                license_arn: id.license_arn.map(str::to_owned),
                dimension: dimension.to_owned(),
                hour,
                timestamp: c.timestamp,
                quantity: c.quantity,
                usage_allocations: r.get("UsageAllocations").cloned(),
                accepted_at: now,
            });
            RecordStatus::Success(record_id)
        }
    })
}

/// The meterable agreement of the product the record's identity bills, if any.
fn billed_agreement(
    st: &mut SandboxState,
    product: &ProductConfig,
    id: &Identity<'_>,
) -> Option<String> {
    let (ci, acct, arn) = (id.customer_identifier, id.account, id.license_arn);
    let candidates = match (ci, arn) {
        (Some(ci), _) => st.agreements_for(&format!("ci:{ci}")),
        (None, Some(arn)) => st.agreements_for(&format!("arn:{arn}")),
        (None, None) => match acct {
            Some(acct) => st.agreements_for(&format!("acct:{acct}")),
            None => Vec::new(),
        },
    };
    candidates
        .iter()
        .filter_map(|id| st.agreements.get(id))
        .filter(|a| a.product_code == product.product_code && a.meterable())
        .find(|a| match (ci, acct, arn) {
            (Some(ci), _, _) => a.customer_identifier == ci,
            (None, Some(acct), Some(arn)) => a.buyer_account_id == acct && a.license_arn == arn,
            (None, Some(acct), None) => a.buyer_account_id == acct,
            _ => false,
        })
        .map(|a| a.agreement_id.clone())
}
