//! Wire types of the SaaS Fulfillment API v2 (api-version 2018-08-31), read leniently: every
//! field optional or defaulted, unknown fields ignored (Microsoft adds fields without notice).

use marketlink_core::{ExternalRef, Marketplace, PurchaseParty, Term};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use time::{
    OffsetDateTime, PrimitiveDateTime, format_description::well_known::Rfc3339,
    macros::format_description,
};

/// `purchaser` / `beneficiary`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AadIdentity {
    pub email_id: Option<String>,
    pub object_id: Option<String>,
    pub tenant_id: Option<String>,
    pub puid: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionTerm {
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub term_unit: Option<String>,
    pub charge_duration: Option<Value>,
}

impl SubscriptionTerm {
    pub fn to_term(&self) -> Term {
        Term {
            start: self.start_date.as_deref().and_then(parse_time),
            end: self.end_date.as_deref().and_then(parse_time),
            unit: self.term_unit.clone(),
        }
    }
}

/// `saasSubscriptionStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaasStatus {
    NotStarted,
    PendingFulfillmentStart,
    Subscribed,
    Suspended,
    Unsubscribed,
    Other(String),
}

impl SaasStatus {
    fn parse(s: &str) -> Self {
        match s {
            "NotStarted" => Self::NotStarted,
            "PendingFulfillmentStart" => Self::PendingFulfillmentStart,
            "Subscribed" => Self::Subscribed,
            "Suspended" => Self::Suspended,
            "Unsubscribed" => Self::Unsubscribed,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// A SaaS subscription as the Fulfillment API returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SaasSubscription {
    #[serde(deserialize_with = "null_default")]
    pub id: String,
    pub publisher_id: Option<String>,
    #[serde(deserialize_with = "null_default")]
    pub offer_id: String,
    pub name: Option<String>,
    pub saas_subscription_status: Option<String>,
    #[serde(deserialize_with = "null_default")]
    pub beneficiary: AadIdentity,
    #[serde(deserialize_with = "null_default")]
    pub purchaser: AadIdentity,
    pub plan_id: Option<String>,
    #[serde(deserialize_with = "lenient_quantity")]
    pub quantity: Option<u32>,
    pub term: Option<SubscriptionTerm>,
    pub auto_renew: Option<bool>,
    #[serde(deserialize_with = "null_default")]
    pub is_test: bool,
    #[serde(deserialize_with = "null_default")]
    pub is_free_trial: bool,
    #[serde(deserialize_with = "null_default")]
    pub allowed_customer_operations: Vec<String>,
    pub sandbox_type: Option<String>,
    pub session_mode: Option<String>,
    pub created: Option<String>,
    pub last_modified: Option<String>,
}

impl SaasSubscription {
    pub fn status(&self) -> SaasStatus {
        SaasStatus::parse(self.saas_subscription_status.as_deref().unwrap_or(""))
    }

    /// How marketlink identifies this subscription: the same for `resolve`, `interpret` and
    /// reconciliation. `customer_id` is the beneficiary tenant (falling back to the purchaser's).
    pub fn external_ref(&self) -> ExternalRef {
        let beneficiary = self.beneficiary.tenant_id.clone();
        let purchaser = self.purchaser.tenant_id.clone();
        ExternalRef {
            marketplace: Marketplace::AZURE,
            external_id: self.id.to_ascii_lowercase(),
            product_code: self.offer_id.clone(),
            customer_id: beneficiary
                .or_else(|| purchaser.clone())
                .unwrap_or_default(),
            customer_account_id: purchaser,
            license_arn: None,
        }
    }

    pub fn term(&self) -> Option<Term> {
        self.term.as_ref().map(SubscriptionTerm::to_term)
    }

    /// The purchaser and the beneficiary, those that name anyone: the identities a landing
    /// sign-in is checked against (Microsoft: Resolve and Get Subscription return both).
    pub fn parties(&self) -> Vec<PurchaseParty> {
        [
            ("purchaser", &self.purchaser),
            ("beneficiary", &self.beneficiary),
        ]
        .into_iter()
        .filter(|(_, who)| who.object_id.is_some() || who.email_id.is_some())
        .map(|(role, who)| PurchaseParty {
            role: role.into(),
            tenant_id: who.tenant_id.clone(),
            object_id: who.object_id.clone(),
            email: who.email_id.clone(),
        })
        .collect()
    }
}

/// The Resolve response.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ResolveResponse {
    pub id: Option<String>,
    pub subscription_name: Option<String>,
    pub offer_id: Option<String>,
    pub plan_id: Option<String>,
    #[serde(deserialize_with = "lenient_quantity")]
    pub quantity: Option<u32>,
    pub subscription: Option<SaasSubscription>,
}

/// Operation `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationStatus {
    NotStarted,
    InProgress,
    Succeeded,
    Failed,
    Conflict,
    Other(String),
}

impl OperationStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "NotStarted" => Self::NotStarted,
            "InProgress" => Self::InProgress,
            // Older documentation and samples write `Success`.
            "Succeeded" | "Success" => Self::Succeeded,
            "Failed" | "Failure" => Self::Failed,
            "Conflict" => Self::Conflict,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Succeeded, Failed or Conflict: the operation will not change any more.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Conflict)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::NotStarted => "NotStarted",
            Self::InProgress => "InProgress",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Conflict => "Conflict",
            Self::Other(s) => s,
        }
    }
}

/// Operation `action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationAction {
    ChangePlan,
    ChangeQuantity,
    Suspend,
    Reinstate,
    Renew,
    Unsubscribe,
    Other(String),
}

impl OperationAction {
    pub fn parse(s: &str) -> Self {
        match s {
            "ChangePlan" => Self::ChangePlan,
            "ChangeQuantity" => Self::ChangeQuantity,
            "Suspend" => Self::Suspend,
            "Reinstate" => Self::Reinstate,
            "Renew" => Self::Renew,
            "Unsubscribe" => Self::Unsubscribe,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// A `SaaSOperation` (Get Operation, list of pending operations, webhook body).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SaasOperation {
    #[serde(deserialize_with = "null_default")]
    pub id: String,
    pub activity_id: Option<String>,
    #[serde(deserialize_with = "null_default")]
    pub subscription_id: String,
    pub offer_id: Option<String>,
    pub publisher_id: Option<String>,
    pub plan_id: Option<String>,
    #[serde(deserialize_with = "lenient_quantity")]
    pub quantity: Option<u32>,
    #[serde(deserialize_with = "null_default")]
    pub action: String,
    pub time_stamp: Option<String>,
    #[serde(deserialize_with = "null_default")]
    pub status: String,
    pub operation_request_source: Option<String>,
    pub error_status_code: Option<Value>,
    pub error_message: Option<String>,
}

impl SaasOperation {
    pub fn status(&self) -> OperationStatus {
        OperationStatus::parse(&self.status)
    }

    pub fn action(&self) -> OperationAction {
        OperationAction::parse(&self.action)
    }

    pub fn time_stamp(&self) -> Option<OffsetDateTime> {
        self.time_stamp.as_deref().and_then(parse_time)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct OperationList {
    #[serde(deserialize_with = "null_default")]
    pub operations: Vec<SaasOperation>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SubscriptionPage {
    #[serde(deserialize_with = "null_default")]
    pub subscriptions: Vec<SaasSubscription>,
    #[serde(rename = "@nextLink")]
    pub next_link: Option<String>,
    #[serde(rename = "continuationToken")]
    pub continuation_token: Option<String>,
}

/// A metered dimension of a plan (`planComponents.meteringDimensions`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MeteringDimension {
    #[serde(deserialize_with = "null_default")]
    pub id: String,
    pub currency: Option<String>,
    pub price_per_unit: Option<f64>,
    pub unit_of_measure: Option<String>,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RecurrentBillingTerm {
    pub currency: Option<String>,
    pub price: Option<f64>,
    pub term_unit: Option<String>,
    pub term_description: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PlanComponents {
    #[serde(deserialize_with = "null_default")]
    pub recurrent_billing_terms: Vec<RecurrentBillingTerm>,
    #[serde(deserialize_with = "null_default")]
    pub metering_dimensions: Vec<MeteringDimension>,
}

/// A plan the subscription may move to (`listAvailablePlans`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AvailablePlan {
    #[serde(deserialize_with = "null_default")]
    pub plan_id: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    #[serde(deserialize_with = "null_default")]
    pub is_private: bool,
    #[serde(deserialize_with = "null_default")]
    pub is_price_per_seat: bool,
    #[serde(deserialize_with = "null_default")]
    pub has_free_trials: bool,
    #[serde(deserialize_with = "null_default")]
    pub is_stop_sell: bool,
    pub market: Option<String>,
    #[serde(deserialize_with = "lenient_quantity")]
    pub min_quantity: Option<u32>,
    #[serde(deserialize_with = "lenient_quantity")]
    pub max_quantity: Option<u32>,
    #[serde(deserialize_with = "null_default")]
    pub plan_components: PlanComponents,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PlanList {
    #[serde(deserialize_with = "null_default")]
    pub plans: Vec<AvailablePlan>,
}

/// An explicit `null` read as the field's default: Microsoft sends nulls for absent values
/// (e.g. `"purchaser": null`, `"allowedCustomerOperations": null`), where `#[serde(default)]`
/// covers only a missing key. `Option` fields take `null` as `None` already.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A quantity as a number, a numeric string (older payloads) or null.
fn lenient_quantity<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let value = Option::<Value>::deserialize(d)?;
    Ok(match value {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .and_then(|n| u32::try_from(n).ok()),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// RFC 3339, or the offset-less and date-only forms some responses use (taken as UTC).
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let forms: [&[time::format_description::BorrowedFormatItem<'_>]; 3] = [
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]"),
    ];
    for form in forms {
        if let Ok(t) = PrimitiveDateTime::parse(s, form) {
            return Some(t.assume_utc());
        }
    }
    time::Date::parse(s, format_description!("[year]-[month]-[day]"))
        .ok()
        .map(|d| d.midnight().assume_utc())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    #[test]
    fn lenient_subscription() {
        let sub: SaasSubscription = serde_json::from_value(json!({
            "id": "37F9DEA2-4345-438F-B0BD-03D40D28C7E0",
            "offerId": "offer",
            "planId": "gold",
            "quantity": "5",
            "saasSubscriptionStatus": "Subscribed",
            "beneficiary": {"tenantId": "b-tid", "emailId": "a@b"},
            "purchaser": {"tenantId": "p-tid"},
            "term": {"startDate": "2026-01-01T00:00:00Z", "endDate": "2026-01-31", "termUnit": "P1M", "chargeDuration": null},
            "someNewField": {"x": 1},
        }))
        .unwrap();
        assert_eq!(sub.quantity, Some(5));
        assert_eq!(sub.status(), SaasStatus::Subscribed);
        let r = sub.external_ref();
        assert_eq!(r.external_id, "37f9dea2-4345-438f-b0bd-03d40d28c7e0");
        assert_eq!(r.customer_id, "b-tid");
        assert_eq!(r.customer_account_id.as_deref(), Some("p-tid"));
        let term = sub.term().unwrap();
        assert_eq!(term.end, Some(datetime!(2026-01-31 00:00 UTC)));
        assert_eq!(term.unit.as_deref(), Some("P1M"));
        // The purchaser names no one (no object id, no email): only the beneficiary is a party.
        let parties = sub.parties();
        assert_eq!(parties.len(), 1);
        assert_eq!(parties[0].role, "beneficiary");
        assert_eq!(parties[0].email.as_deref(), Some("a@b"));
    }

    /// An object with each of `keys` set to `null`.
    fn all_null(keys: &[&str]) -> Value {
        Value::Object(
            keys.iter()
                .map(|k| ((*k).to_owned(), Value::Null))
                .collect(),
        )
    }

    /// Every field `null`: each payload still parses, to defaults.
    #[test]
    fn explicit_nulls_in_subscriptions_and_resolve_parse() {
        let sub: SaasSubscription = serde_json::from_value(all_null(&[
            "id",
            "publisherId",
            "offerId",
            "name",
            "saasSubscriptionStatus",
            "beneficiary",
            "purchaser",
            "planId",
            "quantity",
            "term",
            "autoRenew",
            "isTest",
            "isFreeTrial",
            "allowedCustomerOperations",
            "sandboxType",
            "sessionMode",
            "created",
            "lastModified",
        ]))
        .unwrap();
        assert_eq!(sub, SaasSubscription::default());
        let mut nested = serde_json::to_value(SaasSubscription::default()).unwrap();
        nested["id"] = json!("S1");
        nested["beneficiary"] =
            json!({"emailId": null, "objectId": null, "tenantId": null, "puid": null});
        nested["term"] =
            json!({"startDate": null, "endDate": null, "termUnit": null, "chargeDuration": null});
        let sub: SaasSubscription = serde_json::from_value(nested.clone()).unwrap();
        assert_eq!(sub.external_ref().customer_id, "");
        assert_eq!(sub.term().unwrap().end, None);

        let resolve: ResolveResponse = serde_json::from_value(all_null(&[
            "id",
            "subscriptionName",
            "offerId",
            "planId",
            "quantity",
            "subscription",
        ]))
        .unwrap();
        assert!(resolve.id.is_none() && resolve.subscription.is_none());
        let resolve: ResolveResponse = serde_json::from_value(json!({
            "id": "S1", "subscriptionName": null, "offerId": "o", "planId": null, "quantity": null,
            "subscription": nested,
        }))
        .unwrap();
        assert_eq!(resolve.subscription.unwrap().id, "S1");
    }

    #[test]
    fn explicit_nulls_in_operations_and_plans_parse() {
        let op: SaasOperation = serde_json::from_value(all_null(&[
            "id",
            "activityId",
            "subscriptionId",
            "offerId",
            "publisherId",
            "planId",
            "quantity",
            "action",
            "timeStamp",
            "status",
            "operationRequestSource",
            "errorStatusCode",
            "errorMessage",
        ]))
        .unwrap();
        assert_eq!(op, SaasOperation::default());
        let list: OperationList = serde_json::from_value(json!({"operations": null})).unwrap();
        assert!(list.operations.is_empty());
        let page: SubscriptionPage =
            serde_json::from_value(json!({"subscriptions": null, "@nextLink": null})).unwrap();
        assert!(page.subscriptions.is_empty() && page.next_link.is_none());
        let plans: PlanList = serde_json::from_value(json!({"plans": [{
            "planId": "p", "displayName": null, "isPrivate": null, "isPricePerSeat": null,
            "hasFreeTrials": null, "isStopSell": null, "minQuantity": null,
            "planComponents": {"recurrentBillingTerms": null, "meteringDimensions": [{"id": null}]},
        }]}))
        .unwrap();
        assert_eq!(plans.plans[0].plan_id, "p");
        assert!(!plans.plans[0].is_stop_sell);
        let plans: PlanList =
            serde_json::from_value(json!({"plans": [{"planId": "p", "planComponents": null}]}))
                .unwrap();
        assert!(
            plans.plans[0]
                .plan_components
                .metering_dimensions
                .is_empty()
        );
    }

    #[test]
    fn operation_statuses() {
        assert_eq!(
            OperationStatus::parse("Success"),
            OperationStatus::Succeeded
        );
        assert!(OperationStatus::parse("Conflict").is_terminal());
        assert!(!OperationStatus::parse("InProgress").is_terminal());
        let op: SaasOperation =
            serde_json::from_value(json!({"id": "x", "quantity": null, "action": "Transfer"}))
                .unwrap();
        assert_eq!(op.action(), OperationAction::Other("Transfer".into()));
        assert_eq!(op.quantity, None);
    }
}
