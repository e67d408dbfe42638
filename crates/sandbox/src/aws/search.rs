//! SearchAgreements (AWSMPCommerceService_v20200301), from the marketplace-agreement service
//! model (`SearchAgreementsInput`, `Filter`, `Sort`, `AgreementViewSummary`) and spec
//! `aws-eventbridge.md` §6.
//!
//! The caller is the seller. It sees the agreements it proposed: with `PartyType=Proposer`
//! (or no party type) its direct agreements; a channel partner private offer's proposer is the
//! partner, so those are not the seller's to search [DERIVED, as DescribeAgreement refuses
//! them: crates/sandbox/README.md, "Who the seller is"]. As `Acceptor` the seller has no
//! agreements (it buys nothing in the sandbox): the answer is empty once the filters pass the
//! model's list of combinations supported for acceptors.

use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{
    AwsSandbox,
    input::{opt_i64, opt_str},
    state::Agreement,
    wire::AwsError,
};

/// ValidationException with the model's members: `message`, `reason`
/// (ValidationExceptionReason) and `fields` ([{name, message}]).
fn invalid(reason: &str, field: &str, message: impl Into<String>) -> AwsError {
    let message = message.into();
    AwsError::bad_request("ValidationException", message.clone())
        .with_member("reason", json!(reason))
        .with_member("fields", json!([{"name": field, "message": message}]))
}

/// Filter names the model documents for SearchAgreements.
const FILTER_NAMES: &[&str] = &[
    "ResourceIdentifier",
    "ResourceType",
    "PartyType",
    "AcceptorAccountId",
    "OfferId",
    "Status",
    "BeforeEndTime",
    "AfterEndTime",
    "BeforeStartTime",
    "AfterStartTime",
    "BeforeLastUpdateTime",
    "AfterLastUpdateTime",
    "AgreementType",
    "OfferSetId",
    "EndTimeBehaviorType",
    "EndTimeBehaviorReasonCode",
    "InitialAgreementId",
    "LicenseArn",
    "IncludesContactOfType",
];

/// AgreementStatus in the model.
const STATUSES: &[&str] = &[
    "ACTIVE",
    "ARCHIVED",
    "CANCELLED",
    "EXPIRED",
    "RENEWED",
    "REPLACED",
    "ROLLED_BACK",
    "SUPERSEDED",
    "TERMINATED",
];

/// One `{name, values: [value]}` filter, checked against the model: FilterName 1–32 of
/// `[A-Za-z_]+`, FilterValueList exactly one value, FilterValue 1–256 of `[A-Za-z0-9.,+:/_-]+`.
fn parse_filter(filter: &Value) -> Result<(String, String), AwsError> {
    let name = opt_str(filter, "name")?.ok_or_else(|| {
        invalid(
            "MISSING_FILTER_NAME",
            "filters.name",
            "filter name is required",
        )
    })?;
    let name_ok = (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_');
    if !name_ok || !FILTER_NAMES.contains(&name) {
        return Err(invalid(
            "INVALID_FILTER_NAME",
            "filters.name",
            format!("filter name {name:?} is not supported"),
        ));
    }
    let values = match filter.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values.clone(),
        Some(_) => return Err(AwsError::serialization("values must be a list")),
    };
    let [value] = values.as_slice() else {
        let reason = if values.is_empty() {
            "MISSING_FILTER_VALUES"
        } else {
            "INVALID_FILTER_VALUES"
        };
        return Err(invalid(
            reason,
            "filters.values",
            format!("filter {name} takes exactly one value"),
        ));
    };
    let value = value
        .as_str()
        .ok_or_else(|| AwsError::serialization("filter values must be strings"))?;
    let value_ok = (1..=256).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".,+:/_-".contains(&b));
    if !value_ok {
        return Err(invalid(
            "INVALID_FILTER_VALUES",
            "filters.values",
            format!(
                "value {value:?} of filter {name} must match [A-Za-z0-9.,+:/_-]+ (1 to 256 characters)"
            ),
        ));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// The filters: 1 to 10 (FilterList), each name once [DERIVED: one value per filter makes a
/// repeated name either redundant or contradictory], `AgreementType` required.
fn parse_filters(input: &Value) -> Result<Vec<(String, String)>, AwsError> {
    let list = match input.get("filters") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list.clone(),
        Some(_) => return Err(AwsError::serialization("filters must be a list")),
    };
    if list.len() > 10 {
        return Err(invalid(
            "INVALID_FILTERS",
            "filters",
            "at most 10 filters are allowed",
        ));
    }
    let mut filters: Vec<(String, String)> = Vec::new();
    for filter in &list {
        let (name, value) = parse_filter(filter)?;
        if filters.iter().any(|(n, _)| *n == name) {
            return Err(invalid(
                "INVALID_FILTERS",
                "filters",
                format!("filter {name} is given more than once"),
            ));
        }
        filters.push((name, value));
    }
    if !filters.iter().any(|(n, _)| n == "AgreementType") {
        return Err(invalid(
            "INVALID_FILTERS",
            "filters",
            "the AgreementType filter is required",
        ));
    }
    for (name, value) in &filters {
        check_value(name, value)?;
    }
    Ok(filters)
}

/// Values with a fixed set in the model (PartyType, Status) or a date.
fn check_value(name: &str, value: &str) -> Result<(), AwsError> {
    let bad = |reason: &str| {
        Err(invalid(
            reason,
            "filters.values",
            format!("{value:?} is not a valid value for filter {name}"),
        ))
    };
    match name {
        "PartyType" if !matches!(value, "Proposer" | "Acceptor") => bad("INVALID_PARTY_TYPE"),
        "Status" if !STATUSES.contains(&value) => bad("INVALID_FILTER_VALUES"),
        _ if name.ends_with("Time") && parse_time(value).is_none() => bad("INVALID_FILTER_VALUES"),
        _ => Ok(()),
    }
}

/// A date filter's value: ISO 8601 date-time (the model gives no format; its FilterValue
/// pattern admits `2026-12-07T15:00:00Z`) or epoch seconds [DERIVED].
fn parse_time(value: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(value, &Rfc3339).ok().or_else(|| {
        value
            .parse::<i64>()
            .ok()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
    })
}

/// The combinations the model lists for `PartyType=Acceptor`: AgreementType with at most one
/// of ResourceIdentifier, ResourceType, OfferId, OfferSetId, plus Status (not with
/// ResourceType) and the EndTime filters.
fn acceptor_combination_ok(filters: &[(String, String)]) -> bool {
    let names: Vec<&str> = filters.iter().map(|(n, _)| n.as_str()).collect();
    let allowed = [
        "AgreementType",
        "PartyType",
        "Status",
        "BeforeEndTime",
        "AfterEndTime",
        "ResourceIdentifier",
        "ResourceType",
        "OfferId",
        "OfferSetId",
    ];
    let resources = [
        "ResourceIdentifier",
        "ResourceType",
        "OfferId",
        "OfferSetId",
    ];
    names.iter().all(|n| allowed.contains(n))
        && names.iter().filter(|n| resources.contains(n)).count() <= 1
        && !(names.contains(&"ResourceType") && names.contains(&"Status"))
}

/// `sort`: sortBy EndTime (default), StartTime or LastUpdateTime (proposers only); sortOrder
/// ASCENDING (default) or DESCENDING.
fn parse_sort(input: &Value, acceptor: bool) -> Result<(String, bool), AwsError> {
    let sort = input.get("sort").cloned().unwrap_or(Value::Null);
    let by = opt_str(&sort, "sortBy")?.unwrap_or("EndTime");
    let by_ok = match by {
        "EndTime" => true,
        "StartTime" | "LastUpdateTime" => !acceptor,
        _ => false,
    };
    if !by_ok {
        return Err(invalid(
            "INVALID_SORT_BY",
            "sort.sortBy",
            format!("sortBy {by:?} is not supported for this party type"),
        ));
    }
    let descending = match opt_str(&sort, "sortOrder")?.unwrap_or("ASCENDING") {
        "ASCENDING" => false,
        "DESCENDING" => true,
        other => {
            return Err(invalid(
                "INVALID_SORT_ORDER",
                "sort.sortOrder",
                format!("sortOrder {other:?} must be ASCENDING or DESCENDING"),
            ));
        }
    };
    Ok((by.to_owned(), descending))
}

/// `maxResults` 1–50 (MaxResults); 50 when absent [DERIVED: the model gives no default].
fn page_size(input: &Value) -> Result<usize, AwsError> {
    let max = opt_i64(input, "maxResults")?.unwrap_or(50);
    if !(1..=50).contains(&max) {
        return Err(invalid(
            "INVALID_MAX_RESULTS",
            "maxResults",
            "maxResults must be between 1 and 50",
        ));
    }
    Ok(max as usize)
}

/// `nextToken` → offset (`page-<n>`, the sandbox's own tokens).
fn offset(input: &Value) -> Result<usize, AwsError> {
    match opt_str(input, "nextToken")? {
        None => Ok(0),
        Some(t) => t
            .strip_prefix("page-")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| invalid("INVALID_NEXT_TOKEN", "nextToken", "nextToken is not valid")),
    }
}

/// `endTimeBehavior` as DescribeAgreement reports it: the sandbox's offers have no renewal
/// term, so an active agreement with an end date expires (NO_RENEWAL_TERM).
fn end_time_behavior(ag: &Agreement) -> Option<(&'static str, &'static str)> {
    (ag.end_time.is_some() && ag.agreement_status() == "ACTIVE")
        .then_some(("EXPIRE", "NO_RENEWAL_TERM"))
}

impl AwsSandbox {
    pub(super) fn search_agreements(&self, input: &Value) -> Result<(Value, String), AwsError> {
        if let Some(catalog) = opt_str(input, "catalog")?
            && catalog != "AWSMarketplace"
        {
            return Err(invalid(
                "INVALID_CATALOG",
                "catalog",
                format!("catalog {catalog:?} is not supported"),
            ));
        }
        let filters = parse_filters(input)?;
        let acceptor = filters
            .iter()
            .any(|(n, v)| n == "PartyType" && v == "Acceptor");
        if acceptor && !acceptor_combination_ok(&filters) {
            return Err(invalid(
                "UNSUPPORTED_FILTERS",
                "filters",
                "this filter combination is not supported when PartyType is Acceptor",
            ));
        }
        let (sort_by, descending) = parse_sort(input, acceptor)?;
        let (max, from) = (page_size(input)?, offset(input)?);
        let mut found: Vec<Agreement> = if acceptor {
            Vec::new()
        } else {
            self.agreements()
                .into_iter()
                .filter(|ag| ag.channel_partner.is_none())
                .filter(|ag| filters.iter().all(|(n, v)| self.matches(ag, n, v)))
                .collect()
        };
        found.sort_by(|a, b| {
            let order = sort_key(a, &sort_by).cmp(&sort_key(b, &sort_by));
            let order = if descending { order.reverse() } else { order };
            order.then_with(|| a.agreement_id.cmp(&b.agreement_id))
        });
        let total = found.len();
        let page: Vec<Value> = found
            .iter()
            .skip(from)
            .take(max)
            .map(|ag| self.view_summary(ag))
            .collect();
        let next = from + page.len();
        let summary = format!("{} of {total} agreements", page.len());
        Ok((
            json!({
                "agreementViewSummaries": page,
                "nextToken": (next < total).then(|| format!("page-{next}")),
            }),
            summary,
        ))
    }

    fn product_id(&self, ag: &Agreement) -> String {
        self.config
            .product(&ag.product_code)
            .map(|p| p.product_id.clone())
            .unwrap_or_default()
    }

    /// Whether `ag` passes one filter. Time filters are strict (before / after).
    fn matches(&self, ag: &Agreement, name: &str, value: &str) -> bool {
        let time = parse_time(value);
        let before = |t: Option<OffsetDateTime>| t.zip(time).is_some_and(|(t, v)| t < v);
        let after = |t: Option<OffsetDateTime>| t.zip(time).is_some_and(|(t, v)| t > v);
        match name {
            "AgreementType" => value == "PurchaseAgreement",
            "PartyType" => value == "Proposer",
            "ResourceIdentifier" => self.product_id(ag) == value,
            "ResourceType" => value == "SaaSProduct",
            "AcceptorAccountId" => ag.buyer_account_id == value,
            "OfferId" => ag.offer_id == value,
            "Status" => ag.agreement_status() == value,
            "InitialAgreementId" => ag.initial_agreement_id() == value,
            "LicenseArn" => ag.license_arn == value,
            "BeforeEndTime" => before(ag.end_time),
            "AfterEndTime" => after(ag.end_time),
            "BeforeStartTime" => before(Some(ag.start_time)),
            "AfterStartTime" => after(Some(ag.start_time)),
            "BeforeLastUpdateTime" => before(Some(ag.last_update_time())),
            "AfterLastUpdateTime" => after(Some(ag.last_update_time())),
            "EndTimeBehaviorType" => end_time_behavior(ag).is_some_and(|(t, _)| t == value),
            "EndTimeBehaviorReasonCode" => end_time_behavior(ag).is_some_and(|(_, r)| r == value),
            // No offer sets and no contacts on file in the sandbox.
            _ => false,
        }
    }

    /// AgreementViewSummary. `entitlements` lists the agreement's licence, as
    /// GetAgreementEntitlements does (one per agreement).
    fn view_summary(&self, ag: &Agreement) -> Value {
        let ts = |t: OffsetDateTime| t.unix_timestamp() as f64;
        let behavior = end_time_behavior(ag);
        json!({
            "agreementId": ag.agreement_id,
            "acceptanceTime": ts(ag.created_at),
            "startTime": ts(ag.start_time),
            "endTime": ag.end_time.map(ts),
            "lastUpdateTime": ts(ag.last_update_time()),
            "agreementType": "PurchaseAgreement",
            "acceptor": {"accountId": ag.buyer_account_id},
            "proposer": {"accountId": ag.proposer_account_id(&self.config.seller_account_id)},
            "proposalSummary": {
                "offerId": ag.offer_id,
                "resources": [{"id": self.product_id(ag), "type": "SaaSProduct"}],
            },
            "status": ag.agreement_status(),
            "entitlements": [{"licenseArn": ag.license_arn}],
            "initialAgreementId": ag.initial_agreement_id(),
            "endTimeBehaviorType": behavior.map(|(t, _)| t),
            "endTimeBehaviorReasonCode": behavior.map(|(_, r)| r),
            "freeTrialEndTime": ag.trial_end_time.map(ts),
        })
    }
}

/// Sort key; an agreement without an end date (pay-as-you-go) sorts after every end date
/// [DERIVED: the model does not say where it goes].
fn sort_key(ag: &Agreement, by: &str) -> (bool, Option<OffsetDateTime>) {
    match by {
        "StartTime" => (false, Some(ag.start_time)),
        "LastUpdateTime" => (false, Some(ag.last_update_time())),
        _ => (ag.end_time.is_none(), ag.end_time),
    }
}
