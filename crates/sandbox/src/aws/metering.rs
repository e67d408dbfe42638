//! AWSMPMeteringService: ResolveCustomer and BatchMeterUsage (awsJson1.1).

use serde_json::{Value, json};
use time::{Duration, OffsetDateTime, Time};

use super::{
    AwsSandbox, IdentityMode, MeteredRecord,
    input::{opt_i64, opt_str, req_str},
    wire::AwsError,
};

const MAX_RECORDS: usize = 25;

fn validation(msg: impl Into<String>) -> AwsError {
    AwsError::bad_request("ValidationException", msg)
}

/// Normalize a decimal quantity string: "5" , "5.0" → "5"; "0.250" → "0.25".
fn normalize_decimal(s: &str) -> Option<String> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let int_ok = int == "0"
        || (!int.is_empty()
            && int.len() <= 10
            && !int.starts_with('0')
            && int.bytes().all(|b| b.is_ascii_digit()));
    let frac_ok = frac.len() <= 6 && frac.bytes().all(|b| b.is_ascii_digit());
    if !int_ok || !frac_ok || (s.contains('.') && frac.is_empty()) {
        return None;
    }
    let frac = frac.trim_end_matches('0');
    Some(if frac.is_empty() {
        int.to_owned()
    } else {
        format!("{int}.{frac}")
    })
}

/// Compare two normalized decimals for equality of value.
fn timestamp_of(v: &Value) -> Result<OffsetDateTime, AwsError> {
    let secs = match v.get("Timestamp") {
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or_else(|| AwsError::serialization("Timestamp must be a number"))?,
        None | Some(Value::Null) => {
            return Err(validation(
                "1 validation error detected: Value null at 'usageRecords.member.timestamp' failed to satisfy constraint: Member must not be null",
            ));
        }
        Some(_) => {
            return Err(AwsError::serialization(
                "Timestamp must be epoch seconds (a number)",
            ));
        }
    };
    let nanos = (secs * 1e9) as i128;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| {
        AwsError::bad_request("TimestampOutOfBoundsException", "Timestamp out of range")
    })
}

/// Usage records aren't accepted 24 hours or more after the event, nor in the future; the
/// previous month's records are accepted only until 06:00 UTC on the 1st.
pub(crate) fn timestamp_in_bounds(ts: OffsetDateTime, now: OffsetDateTime) -> bool {
    if ts > now || now - ts >= Duration::hours(24) {
        return false;
    }
    let (ts_m, now_m) = ((ts.year(), ts.month()), (now.year(), now.month()));
    if ts_m != now_m {
        let cutoff = now
            .replace_day(1)
            .map(|d| d.replace_time(Time::from_hms(6, 0, 0).unwrap_or(Time::MIDNIGHT)));
        match cutoff {
            Ok(cutoff) => now < cutoff,
            Err(_) => false,
        }
    } else {
        true
    }
}

fn hour_of(ts: OffsetDateTime) -> OffsetDateTime {
    ts.replace_time(Time::from_hms(ts.hour(), 0, 0).unwrap_or(Time::MIDNIGHT))
}

fn tag_ok(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+ -=._:/@".contains(c))
}

fn check_allocations(record: &Value, quantity: &str, is_decimal: bool) -> Result<(), AwsError> {
    let Some(allocs) = record.get("UsageAllocations").filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let allocs = allocs
        .as_array()
        .ok_or_else(|| AwsError::serialization("UsageAllocations must be a list"))?;
    if allocs.is_empty() || allocs.len() > 2500 {
        return Err(AwsError::bad_request(
            "InvalidUsageAllocationsException",
            "UsageAllocations must hold 1 to 2500 allocations",
        ));
    }
    // Sum in micro-units (6 decimal places) to compare exactly.
    let to_micros = |s: &str| -> Option<i128> {
        let n = normalize_decimal(s)?;
        let (i, f) = n.split_once('.').unwrap_or((&n, ""));
        let mut frac = f.to_owned();
        while frac.len() < 6 {
            frac.push('0');
        }
        Some(i.parse::<i128>().ok()? * 1_000_000 + frac.parse::<i128>().ok()?)
    };
    let mut sum: i128 = 0;
    for a in allocs {
        let (q, dec) = (
            opt_i64(a, "AllocatedUsageQuantity")?,
            opt_str(a, "AllocatedUsageQuantityAsDecimal")?,
        );
        let micros = match (q, dec) {
            (Some(q), None) if !is_decimal && (0..=i64::from(i32::MAX)).contains(&q) => {
                i128::from(q) * 1_000_000
            }
            (None, Some(d)) if is_decimal => to_micros(d).ok_or_else(|| {
                AwsError::bad_request(
                    "InvalidUsageAllocationsException",
                    "Invalid AllocatedUsageQuantityAsDecimal",
                )
            })?,
            _ => {
                return Err(AwsError::bad_request(
                    "InvalidUsageAllocationsException",
                    "Allocations must use the same type of quantity as the usage record",
                ));
            }
        };
        sum += micros;
        if let Some(tags) = a.get("Tags").filter(|v| !v.is_null()) {
            let tags = tags
                .as_array()
                .ok_or_else(|| AwsError::serialization("Tags must be a list"))?;
            if tags.is_empty() || tags.len() > 5 {
                return Err(AwsError::bad_request(
                    "InvalidTagException",
                    "Each allocation carries 1 to 5 tags",
                ));
            }
            let mut keys = std::collections::HashSet::new();
            for t in tags {
                let k = opt_str(t, "Key")?.unwrap_or("");
                let v = opt_str(t, "Value")?.unwrap_or("");
                if !tag_ok(k, 100) || !tag_ok(v, 256) || !keys.insert(k.to_owned()) {
                    return Err(AwsError::bad_request(
                        "InvalidTagException",
                        format!("Invalid tag {k:?}={v:?}"),
                    ));
                }
            }
        }
    }
    if Some(sum) != to_micros(quantity) {
        return Err(AwsError::bad_request(
            "InvalidUsageAllocationsException",
            "The sum of the allocated quantities must equal the usage record quantity",
        ));
    }
    Ok(())
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
        let records = match input.get("UsageRecords") {
            Some(Value::Array(r)) => r,
            None | Some(Value::Null) => {
                return Err(validation(
                    "1 validation error detected: Value null at 'usageRecords' failed to satisfy constraint: Member must not be null",
                ));
            }
            Some(_) => return Err(AwsError::serialization("UsageRecords must be a list")),
        };
        if records.len() > MAX_RECORDS {
            return Err(validation(format!(
                "1 validation error detected: Value at 'usageRecords' failed to satisfy constraint: Member must have length less than or equal to {MAX_RECORDS}"
            )));
        }
        let request_product = opt_str(input, "ProductCode")?;
        let now = self.now();
        let mut st = self.lock();

        // Which product does this call meter? ProductCode, or the LicenseArns' product.
        let mut product_code: Option<String> = request_product.map(str::to_owned);
        for r in records {
            if let Some(arn) = opt_str(r, "LicenseArn")? {
                let ag = st
                    .agreements
                    .values()
                    .find(|a| a.license_arn == arn)
                    .ok_or_else(|| {
                        AwsError::bad_request(
                            "InvalidLicenseException",
                            format!("LicenseArn {arn} is not valid"),
                        )
                    })?;
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
        let product = match &product_code {
            Some(code) => self.config.product(code).ok_or_else(|| {
                AwsError::bad_request(
                    "InvalidProductCodeException",
                    format!("Product code {code} is not valid"),
                )
            })?,
            None if records.is_empty() => {
                return Ok((
                    json!({"Results": [], "UnprocessedRecords": []}),
                    "0 records".into(),
                ));
            }
            None => {
                return Err(AwsError::bad_request(
                    "InvalidProductCodeException",
                    "ProductCode is required when the usage records carry no LicenseArn",
                ));
            }
        };

        // Validate the whole batch first: any invalid record fails the request.
        struct Checked {
            timestamp: OffsetDateTime,
            quantity: String,
        }
        let mut checked = Vec::with_capacity(records.len());
        for r in records {
            if !r.is_object() {
                return Err(AwsError::serialization("UsageRecord must be a structure"));
            }
            let dimension = req_str(r, "Dimension", "ValidationException")?;
            if product.dimension(dimension).is_none() {
                return Err(AwsError::bad_request(
                    "InvalidUsageDimensionException",
                    format!(
                        "Dimension {dimension} is not valid for product {}",
                        product.product_code
                    ),
                ));
            }
            let ci = opt_str(r, "CustomerIdentifier")?.filter(|s| !s.is_empty());
            let acct = opt_str(r, "CustomerAWSAccountId")?;
            let arn = opt_str(r, "LicenseArn")?;
            match (ci, acct) {
                (Some(_), None) if arn.is_none() => {}
                (None, Some(a)) if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) => {}
                _ => {
                    return Err(AwsError::bad_request(
                        "InvalidCustomerIdentifierException",
                        "Each usage record needs exactly one of CustomerIdentifier or CustomerAWSAccountId (LicenseArn goes with CustomerAWSAccountId)",
                    ));
                }
            }
            if ci.is_some() && request_product.is_none() {
                return Err(AwsError::bad_request(
                    "InvalidProductCodeException",
                    "ProductCode is required with CustomerIdentifier",
                ));
            }
            if let (Some(a), Some(arn)) = (acct, arn) {
                let matches = st
                    .agreements
                    .values()
                    .any(|ag| ag.license_arn == arn && ag.buyer_account_id == a);
                if !matches {
                    return Err(AwsError::bad_request(
                        "InvalidLicenseException",
                        format!("LicenseArn {arn} does not match customer {a}"),
                    ));
                }
            }
            let (quantity, is_decimal) = match (
                opt_i64(r, "Quantity")?,
                opt_str(r, "QuantityAsDecimal")?,
            ) {
                (Some(_), Some(_)) => {
                    return Err(validation(
                        "Quantity and QuantityAsDecimal are mutually exclusive",
                    ));
                }
                (Some(q), None) => {
                    if !(0..=i64::from(i32::MAX)).contains(&q) {
                        return Err(validation(
                            "1 validation error detected: Value at 'usageRecords.member.quantity' failed to satisfy constraint: Member must have value between 0 and 2147483647",
                        ));
                    }
                    (q.to_string(), false)
                }
                (None, Some(d)) => (
                    normalize_decimal(d).ok_or_else(|| {
                        validation(format!(
                            "QuantityAsDecimal {d:?} must match ^(0|[1-9][0-9]{{0,9}})(\\.[0-9]{{1,6}})?$"
                        ))
                    })?,
                    true,
                ),
                (None, None) => ("0".to_owned(), false),
            };
            let timestamp = timestamp_of(r)?;
            if !timestamp_in_bounds(timestamp, now) {
                return Err(AwsError::bad_request(
                    "TimestampOutOfBoundsException",
                    "Usage records aren't accepted 24 hours or more after the event, in the future, or for the previous month after 06:00 UTC on the 1st",
                ));
            }
            check_allocations(r, &quantity, is_decimal)?;
            checked.push(Checked {
                timestamp,
                quantity,
            });
        }

        let mut results = Vec::with_capacity(records.len());
        let (mut ok, mut dup, mut unsub) = (0, 0, 0);
        for (r, c) in records.iter().zip(checked) {
            let dimension = opt_str(r, "Dimension")?.unwrap_or_default();
            let ci = opt_str(r, "CustomerIdentifier")?.filter(|s| !s.is_empty());
            let acct = opt_str(r, "CustomerAWSAccountId")?;
            let arn = opt_str(r, "LicenseArn")?;
            // Find the agreement the record bills.
            let candidates = match (ci, arn) {
                (Some(ci), _) => st.agreements_for(&format!("ci:{ci}")),
                (None, Some(arn)) => st.agreements_for(&format!("arn:{arn}")),
                (None, None) => match acct {
                    Some(acct) => st.agreements_for(&format!("acct:{acct}")),
                    None => Vec::new(),
                },
            };
            let agreement = candidates
                .iter()
                .filter_map(|id| st.agreements.get(id))
                .filter(|a| a.product_code == product.product_code && a.meterable())
                .find(|a| match (ci, acct, arn) {
                    (Some(ci), _, _) => a.customer_identifier == ci,
                    (None, Some(acct), Some(arn)) => {
                        a.buyer_account_id == acct && a.license_arn == arn
                    }
                    (None, Some(acct), None) => a.buyer_account_id == acct,
                    _ => false,
                })
                .map(|a| a.agreement_id.clone());
            let Some(agreement_id) = agreement else {
                unsub += 1;
                results.push(json!({"UsageRecord": r, "Status": "CustomerNotSubscribed"}));
                continue;
            };
            let hour = hour_of(c.timestamp);
            let key = (
                product.product_code.clone(),
                dimension.to_owned(),
                hour,
                ci.map(str::to_owned),
                acct.map(str::to_owned),
                arn.map(str::to_owned),
            );
            let existing = st
                .ledger_find(&key)
                .map(|m| (m.quantity.clone(), m.metering_record_id.clone()));
            match existing {
                Some((quantity, record_id)) if quantity == c.quantity => {
                    ok += 1;
                    results.push(json!({"UsageRecord": r, "MeteringRecordId": record_id, "Status": "Success"}));
                }
                Some(_) => {
                    dup += 1;
                    results.push(json!({"UsageRecord": r, "Status": "DuplicateRecord"}));
                }
                None => {
                    let id = uuid::Uuid::new_v4().to_string();
                    st.ledger_push(MeteredRecord {
                        metering_record_id: id.clone(),
                        product_code: product.product_code.clone(),
                        agreement_id,
                        customer_identifier: ci.map(str::to_owned),
                        customer_aws_account_id: acct.map(str::to_owned),
                        license_arn: arn.map(str::to_owned),
                        dimension: dimension.to_owned(),
                        hour,
                        timestamp: c.timestamp,
                        quantity: c.quantity,
                        usage_allocations: r.get("UsageAllocations").cloned(),
                        accepted_at: now,
                    });
                    ok += 1;
                    results.push(
                        json!({"UsageRecord": r, "MeteringRecordId": id, "Status": "Success"}),
                    );
                }
            }
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
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn timestamp_bounds_follow_the_model() {
        let now = datetime!(2026-04-10 12:00 UTC);
        assert!(timestamp_in_bounds(datetime!(2026-04-10 11:59 UTC), now));
        assert!(timestamp_in_bounds(datetime!(2026-04-09 12:01 UTC), now));
        assert!(!timestamp_in_bounds(datetime!(2026-04-09 12:00 UTC), now));
        assert!(!timestamp_in_bounds(datetime!(2026-04-10 12:01 UTC), now));
        // Month-end grace until 06:00 UTC on the 1st.
        let early = datetime!(2026-04-01 05:00 UTC);
        assert!(timestamp_in_bounds(datetime!(2026-03-31 23:00 UTC), early));
        let late = datetime!(2026-04-01 07:00 UTC);
        assert!(!timestamp_in_bounds(datetime!(2026-03-31 23:00 UTC), late));
        assert!(timestamp_in_bounds(datetime!(2026-04-01 06:30 UTC), late));
    }

    #[test]
    fn decimals_normalize() {
        assert_eq!(normalize_decimal("5").as_deref(), Some("5"));
        assert_eq!(normalize_decimal("0.250").as_deref(), Some("0.25"));
        assert_eq!(normalize_decimal("5.000000").as_deref(), Some("5"));
        assert_eq!(normalize_decimal("05"), None);
        assert_eq!(normalize_decimal("1."), None);
        assert_eq!(normalize_decimal("0.1234567"), None);
    }
}
