//! Validation of BatchMeterUsage records, all before any is metered: identity, quantity
//! (integer or decimal), timestamp window and usage allocations with their tags.

use serde_json::Value;
use time::{Duration, OffsetDateTime, Time};

use crate::aws::{
    ProductConfig,
    input::{opt_i64, opt_str, req_str},
    state::SandboxState,
    wire::AwsError,
};

/// "BatchMeterUsage can process up to 25 UsageRecords at a time" (AWS Marketplace Metering
/// Service API reference, BatchMeterUsage).
pub(super) const MAX_RECORDS: usize = 25;

pub(super) fn validation(msg: impl Into<String>) -> AwsError {
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

/// The record's `Timestamp` (epoch seconds, fractions allowed).
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

/// `UsageRecords`: present, a list, at most [`MAX_RECORDS`].
pub(super) fn usage_records(input: &Value) -> Result<&[Value], AwsError> {
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
    Ok(records)
}

/// A usage record that passed validation.
pub(super) struct Checked {
    pub(super) timestamp: OffsetDateTime,
    /// Normalized decimal string.
    pub(super) quantity: String,
}

/// The buyer identity of a record: `CustomerIdentifier`, or `CustomerAWSAccountId` with an
/// optional `LicenseArn`.
pub(super) struct Identity<'a> {
    pub(super) customer_identifier: Option<&'a str>,
    pub(super) account: Option<&'a str>,
    pub(super) license_arn: Option<&'a str>,
}

impl<'a> Identity<'a> {
    pub(super) fn of(r: &'a Value) -> Result<Self, AwsError> {
        Ok(Self {
            customer_identifier: opt_str(r, "CustomerIdentifier")?.filter(|s| !s.is_empty()),
            account: opt_str(r, "CustomerAWSAccountId")?,
            license_arn: opt_str(r, "LicenseArn")?,
        })
    }
}

/// Validates one record of the batch: dimension, identity, quantity, timestamp, allocations.
pub(super) fn check_record(
    st: &SandboxState,
    product: &ProductConfig,
    request_product: Option<&str>,
    r: &Value,
    now: OffsetDateTime,
) -> Result<Checked, AwsError> {
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
    check_identity(st, request_product, &Identity::of(r)?)?;
    let (quantity, is_decimal) = quantity_of(r)?;
    let timestamp = timestamp_of(r)?;
    if !timestamp_in_bounds(timestamp, now) {
        return Err(AwsError::bad_request(
            "TimestampOutOfBoundsException",
            "Usage records aren't accepted 24 hours or more after the event, in the future, or for the previous month after 06:00 UTC on the 1st",
        ));
    }
    check_allocations(r, &quantity, is_decimal)?;
    Ok(Checked {
        timestamp,
        quantity,
    })
}

/// Exactly one of CustomerIdentifier (with ProductCode) or CustomerAWSAccountId (digits, with
/// a LicenseArn of that account when given).
fn check_identity(
    st: &SandboxState,
    request_product: Option<&str>,
    id: &Identity<'_>,
) -> Result<(), AwsError> {
    match (id.customer_identifier, id.account) {
        (Some(_), None) if id.license_arn.is_none() => {}
        (None, Some(a)) if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) => {}
        _ => {
            return Err(AwsError::bad_request(
                "InvalidCustomerIdentifierException",
                "Each usage record needs exactly one of CustomerIdentifier or CustomerAWSAccountId (LicenseArn goes with CustomerAWSAccountId)",
            ));
        }
    }
    if id.customer_identifier.is_some() && request_product.is_none() {
        return Err(AwsError::bad_request(
            "InvalidProductCodeException",
            "ProductCode is required with CustomerIdentifier",
        ));
    }
    if let (Some(a), Some(arn)) = (id.account, id.license_arn) {
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
    Ok(())
}

/// `Quantity` or `QuantityAsDecimal` (not both; 0 when neither) as a normalized decimal, and
/// whether it was the decimal form.
fn quantity_of(r: &Value) -> Result<(String, bool), AwsError> {
    Ok(
        match (opt_i64(r, "Quantity")?, opt_str(r, "QuantityAsDecimal")?) {
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
        },
    )
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
