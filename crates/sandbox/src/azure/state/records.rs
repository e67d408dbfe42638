//! The marketplace's records as the sandbox keeps them (subscriptions, operations, usage events,
//! authorization codes, call log and webhook deliveries) and their JSON shapes in
//! saasapi.v2.json / meteringapi.v1.json.

use serde::Serialize;
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

use crate::azure::config::TestUser;

/// RFC 3339 in UTC, as the marketplace writes timestamps.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SubscriptionStatus {
    PendingFulfillmentStart,
    Subscribed,
    Suspended,
    Unsubscribed,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingFulfillmentStart => "PendingFulfillmentStart",
            Self::Subscribed => "Subscribed",
            Self::Suspended => "Suspended",
            Self::Unsubscribed => "Unsubscribed",
        }
    }
}

/// A buyer identity as the marketplace reports it (`purchaser` / `beneficiary`).
#[derive(Debug, Clone, Serialize)]
pub struct AadIdentity {
    pub email_id: Option<String>,
    pub object_id: String,
    pub tenant_id: String,
    pub puid: String,
}

impl AadIdentity {
    pub fn from_user(user: &TestUser) -> Self {
        let digits: String = user
            .object_id
            .bytes()
            .filter(u8::is_ascii_hexdigit)
            .take(16)
            .collect::<Vec<u8>>()
            .iter()
            .map(|b| char::from(*b).to_ascii_uppercase())
            .collect();
        Self {
            email_id: user.email_id().map(str::to_owned),
            object_id: user.object_id.clone(),
            tenant_id: user.tenant_id.clone(),
            puid: digits,
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "objectId": self.object_id,
            "tenantId": self.tenant_id,
            "puid": self.puid,
        });
        if let (Some(email), Some(obj)) = (&self.email_id, v.as_object_mut()) {
            obj.insert("emailId".into(), json!(email));
        }
        v
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Subscription {
    pub id: Uuid,
    pub name: String,
    pub offer_id: String,
    pub plan_id: String,
    pub quantity: Option<i64>,
    pub status: SubscriptionStatus,
    pub purchaser: AadIdentity,
    pub beneficiary: AadIdentity,
    pub term_unit: String,
    pub term_start: Option<OffsetDateTime>,
    pub term_end: Option<OffsetDateTime>,
    pub auto_renew: bool,
    pub is_test: bool,
    pub is_free_trial: bool,
    pub allowed_customer_operations: Vec<String>,
    pub created: OffsetDateTime,
    pub last_modified: OffsetDateTime,
    pub unsubscribed_at: Option<OffsetDateTime>,
    /// Stands in for the buyer's Azure subscription (metering `azureSubscriptionId`).
    pub azure_subscription_id: Uuid,
}

impl Subscription {
    /// The `Subscription` object of saasapi.v2.json.
    pub fn to_json(&self, publisher_id: &str) -> Value {
        let mut term = serde_json::Map::new();
        term.insert("termUnit".into(), json!(self.term_unit));
        if let Some(start) = self.term_start {
            term.insert("startDate".into(), json!(rfc3339(start)));
        }
        if let Some(end) = self.term_end {
            term.insert("endDate".into(), json!(rfc3339(end)));
        }
        let mut v = json!({
            "id": self.id,
            "publisherId": publisher_id,
            "offerId": self.offer_id,
            "name": self.name,
            "saasSubscriptionStatus": self.status.as_str(),
            "beneficiary": self.beneficiary.to_json(),
            "purchaser": self.purchaser.to_json(),
            "planId": self.plan_id,
            "term": Value::Object(term),
            "autoRenew": self.auto_renew,
            "isTest": self.is_test,
            "isFreeTrial": self.is_free_trial,
            "allowedCustomerOperations": self.allowed_customer_operations,
            "sandboxType": "None",
            "created": rfc3339(self.created),
            "sessionMode": "None",
        });
        if let (Some(q), Some(obj)) = (self.quantity, v.as_object_mut()) {
            obj.insert("quantity".into(), json!(q));
        }
        v
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Action {
    Unsubscribe,
    ChangePlan,
    ChangeQuantity,
    Suspend,
    Reinstate,
    Renew,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unsubscribe => "Unsubscribe",
            Self::ChangePlan => "ChangePlan",
            Self::ChangeQuantity => "ChangeQuantity",
            Self::Suspend => "Suspend",
            Self::Reinstate => "Reinstate",
            Self::Renew => "Renew",
        }
    }

    /// Whether the publisher may refuse it (PATCH Failure, or a 4xx webhook answer) within
    /// the window, after which it is accepted on its own. Microsoft's webhook page: only
    /// ChangePlan and ChangeQuantity; a Reinstate is notify-only (ack with 200, nothing to
    /// PATCH; one that cannot be honoured is answered by deleting the subscription).
    pub fn awaits_ack(self) -> bool {
        matches!(self, Self::ChangePlan | Self::ChangeQuantity)
    }

    /// Whether it starts `InProgress` and completes on its own (a Reinstate); a PATCH may still
    /// settle it first, as older revisions of the docs describe (azure-details.md, Operations).
    pub fn completes_alone(self) -> bool {
        matches!(self, Self::Reinstate)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OperationStatus {
    #[expect(dead_code, reason = "a spec status the sandbox never produces")]
    NotStarted,
    InProgress,
    Succeeded,
    Failed,
    #[expect(dead_code, reason = "a spec status the sandbox never produces")]
    Conflict,
}

impl OperationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotStarted => "NotStarted",
            Self::InProgress => "InProgress",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Conflict => "Conflict",
        }
    }
}

/// Who started an operation (`operationRequestSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RequestSource {
    /// The buyer or Microsoft (marketplace side).
    Azure,
    /// The publisher, through the Fulfillment API.
    Partner,
}

#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    pub id: Uuid,
    pub activity_id: Uuid,
    pub subscription_id: Uuid,
    pub offer_id: String,
    pub plan_id: String,
    pub quantity: Option<i64>,
    pub action: Action,
    pub timestamp: OffsetDateTime,
    pub status: OperationStatus,
    pub source: RequestSource,
    /// Plan and quantity before the change, to revert a refused ChangePlan/ChangeQuantity.
    pub previous: Option<(String, Option<i64>)>,
    pub error_message: Option<String>,
}

impl Operation {
    /// The `SaaSOperation` object of saasapi.v2.json.
    pub fn to_json(&self, publisher_id: &str) -> Value {
        let mut v = json!({
            "id": self.id,
            "activityId": self.activity_id,
            "subscriptionId": self.subscription_id,
            "offerId": self.offer_id,
            "publisherId": publisher_id,
            "planId": self.plan_id,
            "action": self.action.as_str(),
            "timeStamp": rfc3339(self.timestamp),
            "status": self.status.as_str(),
        });
        if let (Some(q), Some(obj)) = (self.quantity, v.as_object_mut()) {
            obj.insert("quantity".into(), json!(q));
        }
        v
    }
}

#[derive(Debug, Clone)]
pub struct LandingToken {
    pub subscription_id: Uuid,
    pub expires_at: OffsetDateTime,
}

/// An accepted usage event (the metering ledger).
#[derive(Debug, Clone, Serialize)]
pub struct UsageRecord {
    pub usage_event_id: Uuid,
    pub message_time: OffsetDateTime,
    pub resource_id: Uuid,
    pub quantity: f64,
    pub dimension: String,
    pub effective_start_time: OffsetDateTime,
    pub plan_id: String,
    pub offer_id: String,
}

impl UsageRecord {
    pub fn to_json(&self, status: &str) -> Value {
        json!({
            "usageEventId": self.usage_event_id,
            "status": status,
            "messageTime": rfc3339(self.message_time),
            "resourceId": self.resource_id,
            "quantity": self.quantity,
            "dimension": self.dimension,
            "effectiveStartTime": rfc3339(self.effective_start_time),
            "planId": self.plan_id,
        })
    }
}

/// An authorization code issued by the sign-in page.
#[derive(Debug, Clone)]
pub struct AuthCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub user_object_id: String,
    pub expires_at: OffsetDateTime,
}

/// One HTTP call the sandbox served.
#[derive(Debug, Clone, Serialize)]
pub struct CallLogEntry {
    pub at: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The Entra app that made the call (bearer token `appid`/`azp`, or a token request's
    /// `client_id`), when known.
    pub app_id: Option<String>,
}

/// One webhook delivery attempt.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookAttempt {
    pub operation_id: Uuid,
    pub action: &'static str,
    pub attempt: u32,
    pub at: String,
    /// HTTP status of the vendor's answer, or `None` when the connection failed.
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// A purchase made on the buyer page (or by a test through the handle).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PurchaseRequest {
    pub offer_id: String,
    pub plan_id: String,
    /// Seats, for per-seat plans; `None` takes the plan's minimum.
    #[serde(default)]
    pub quantity: Option<i64>,
    /// Object id of one of the configured test users.
    pub buyer_object_id: String,
    #[serde(default)]
    pub subscription_name: Option<String>,
    #[serde(default)]
    pub is_test: bool,
}
