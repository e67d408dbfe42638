//! In-memory marketplace state: subscriptions, landing tokens, operations, usage events, the call
//! log and webhook deliveries. Pure data and state transitions; HTTP lives elsewhere.

use std::collections::{HashMap, VecDeque};

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use time::{Date, Duration, Month, OffsetDateTime, Time, format_description::well_known::Rfc3339};
use uuid::Uuid;

use super::config::{AzureSandboxConfig, PlanConfig, TestUser};

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

    /// Whether the publisher may answer it (PATCH Success/Failure, or a 4xx webhook answer).
    pub fn awaits_ack(self) -> bool {
        matches!(
            self,
            Self::ChangePlan | Self::ChangeQuantity | Self::Reinstate
        )
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

/// An error from the marketplace APIs, with the body each API family uses.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Value,
}

impl ApiError {
    /// Fulfillment API shape: `{"error": {"code", "message"}}`.
    pub fn fulfillment(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({"error": {"code": code, "message": message.into()}}),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::fulfillment(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::fulfillment(StatusCode::NOT_FOUND, "EntityNotFound", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::fulfillment(StatusCode::CONFLICT, "Conflict", message)
    }
}

const CALL_LOG_CAP: usize = 2000;

#[derive(Default)]
pub struct State {
    pub subscriptions: Vec<Subscription>,
    pub landing_tokens: HashMap<String, LandingToken>,
    pub operations: Vec<Operation>,
    pub usage: Vec<UsageRecord>,
    /// (resource, dimension, hour start as unix seconds) → index into `usage`.
    pub usage_keys: HashMap<(Uuid, String, i64), usize>,
    pub auth_codes: HashMap<String, AuthCode>,
    pub calls: VecDeque<CallLogEntry>,
    pub webhook_attempts: Vec<WebhookAttempt>,
}

/// Adds `months` calendar months, clamping the day to the month's length.
fn add_months(date: Date, months: i32) -> Date {
    let total = date.year() * 12 + i32::from(u8::from(date.month())) - 1 + months;
    let year = total.div_euclid(12);
    let month_number = u8::try_from(total.rem_euclid(12) + 1).unwrap_or(1);
    let month = Month::try_from(month_number).unwrap_or(Month::January);
    let day = date.day().min(month.length(year));
    Date::from_calendar_date(year, month, day).unwrap_or(date)
}

/// Term dates for a term starting `now`: start at midnight UTC, end the day before the same date
/// `term_unit` later (how the real API reports `term.endDate`).
pub fn term_dates(now: OffsetDateTime, term_unit: &str) -> (OffsetDateTime, OffsetDateTime) {
    let months = match term_unit {
        "P1Y" => 12,
        "P2Y" => 24,
        "P3Y" => 36,
        "P4Y" => 48,
        "P5Y" => 60,
        _ => 1,
    };
    let start_date = now.to_offset(time::UtcOffset::UTC).date();
    let start = start_date.with_time(Time::MIDNIGHT).assume_utc();
    let end = (add_months(start_date, months) - Duration::days(1))
        .with_time(Time::MIDNIGHT)
        .assume_utc();
    (start, end)
}

impl State {
    pub fn subscription(&self, id: Uuid) -> Option<&Subscription> {
        self.subscriptions.iter().find(|s| s.id == id)
    }

    pub fn subscription_mut(&mut self, id: Uuid) -> Option<&mut Subscription> {
        self.subscriptions.iter_mut().find(|s| s.id == id)
    }

    pub fn operation(&self, id: Uuid) -> Option<&Operation> {
        self.operations.iter().find(|o| o.id == id)
    }

    pub fn log_call(&mut self, entry: CallLogEntry) {
        if self.calls.len() >= CALL_LOG_CAP {
            self.calls.pop_front();
        }
        self.calls.push_back(entry);
    }

    /// A new purchase in `PendingFulfillmentStart`, as after the buyer clicks "Subscribe".
    pub fn purchase(
        &mut self,
        config: &AzureSandboxConfig,
        request: &PurchaseRequest,
        now: OffsetDateTime,
    ) -> Result<Uuid, String> {
        let offer = config
            .offer(&request.offer_id)
            .ok_or_else(|| format!("unknown offer {}", request.offer_id))?;
        let plan = offer
            .plans
            .iter()
            .find(|p| p.id == request.plan_id)
            .ok_or_else(|| format!("unknown plan {}", request.plan_id))?;
        let quantity = check_quantity(plan, request.quantity)?;
        let user = config
            .user(&request.buyer_object_id)
            .ok_or_else(|| format!("unknown test user {}", request.buyer_object_id))?;
        let identity = AadIdentity::from_user(user);
        let id = Uuid::new_v4();
        self.subscriptions.push(Subscription {
            id,
            name: request
                .subscription_name
                .clone()
                .unwrap_or_else(|| format!("{} for {}", offer.display_name, user.display_name)),
            offer_id: offer.id.clone(),
            plan_id: plan.id.clone(),
            quantity,
            status: SubscriptionStatus::PendingFulfillmentStart,
            purchaser: identity.clone(),
            beneficiary: identity,
            term_unit: plan.term_unit.clone(),
            term_start: None,
            term_end: None,
            auto_renew: true,
            is_test: request.is_test,
            is_free_trial: plan.has_free_trials,
            allowed_customer_operations: vec!["Read".into(), "Update".into(), "Delete".into()],
            created: now,
            last_modified: now,
            unsubscribed_at: None,
            azure_subscription_id: Uuid::new_v4(),
        });
        Ok(id)
    }

    /// A fresh landing-page token for `subscription` (opaque; contains `+`, `/` and `=` often,
    /// so vendors must URL-decode it).
    pub fn issue_landing_token(
        &mut self,
        subscription: Uuid,
        expires_at: OffsetDateTime,
    ) -> String {
        use base64::{Engine, engine::general_purpose::STANDARD};
        use rand::RngCore;
        let mut raw = [0u8; 47];
        rand::thread_rng().fill_bytes(&mut raw);
        let token = STANDARD.encode(raw);
        self.landing_tokens.insert(
            token.clone(),
            LandingToken {
                subscription_id: subscription,
                expires_at,
            },
        );
        token
    }

    pub fn has_pending_operation(&self, subscription: Uuid) -> bool {
        self.operations.iter().any(|o| {
            o.subscription_id == subscription
                && matches!(
                    o.status,
                    OperationStatus::InProgress | OperationStatus::NotStarted
                )
        })
    }

    /// Records an operation on `sub` (already updated by the caller).
    pub fn record_operation(
        &mut self,
        subscription: Uuid,
        action: Action,
        status: OperationStatus,
        source: RequestSource,
        previous: Option<(String, Option<i64>)>,
        now: OffsetDateTime,
    ) -> Option<Uuid> {
        let sub = self.subscription(subscription)?;
        let op = Operation {
            id: Uuid::new_v4(),
            activity_id: Uuid::new_v4(),
            subscription_id: subscription,
            offer_id: sub.offer_id.clone(),
            plan_id: sub.plan_id.clone(),
            quantity: sub.quantity,
            action,
            timestamp: now,
            status,
            source,
            previous,
            error_message: None,
        };
        let id = op.id;
        self.operations.push(op);
        Some(id)
    }

    /// Applies a marketplace-side action (buyer or Microsoft) and records its operation.
    pub fn marketplace_action(
        &mut self,
        config: &AzureSandboxConfig,
        subscription: Uuid,
        action: &MarketplaceAction,
        now: OffsetDateTime,
    ) -> Result<Uuid, ApiError> {
        if self.has_pending_operation(subscription)
            && !matches!(
                action,
                MarketplaceAction::Unsubscribe | MarketplaceAction::Suspend
            )
        {
            return Err(ApiError::conflict(
                "another operation is in progress on this subscription",
            ));
        }
        let sub = self
            .subscription_mut(subscription)
            .ok_or_else(|| ApiError::not_found("subscription not found"))?;
        let previous = Some((sub.plan_id.clone(), sub.quantity));
        let require = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(ApiError::bad_request(format!(
                    "{what}: not allowed while the subscription is {}",
                    sub.status.as_str()
                )))
            }
        };
        let (op_action, op_status) = match action {
            MarketplaceAction::ChangePlan(plan_id) => {
                require(sub.status == SubscriptionStatus::Subscribed, "ChangePlan")?;
                let plan = config
                    .plan(&sub.offer_id, plan_id)
                    .ok_or_else(|| ApiError::bad_request(format!("unknown plan {plan_id}")))?;
                if plan.id == sub.plan_id {
                    return Err(ApiError::bad_request(
                        "the subscription already has this plan",
                    ));
                }
                let quantity = if plan.is_price_per_seat {
                    Some(sub.quantity.unwrap_or(plan.min_quantity.unwrap_or(1)))
                } else {
                    None
                };
                sub.plan_id = plan.id.clone();
                sub.quantity = quantity;
                (Action::ChangePlan, OperationStatus::InProgress)
            }
            MarketplaceAction::ChangeQuantity(quantity) => {
                require(
                    sub.status == SubscriptionStatus::Subscribed,
                    "ChangeQuantity",
                )?;
                let plan = config
                    .plan(&sub.offer_id, &sub.plan_id)
                    .ok_or_else(|| ApiError::bad_request("plan no longer exists"))?;
                let quantity =
                    check_quantity(plan, Some(*quantity)).map_err(ApiError::bad_request)?;
                if quantity == sub.quantity {
                    return Err(ApiError::bad_request(
                        "the subscription already has this quantity",
                    ));
                }
                sub.quantity = quantity;
                (Action::ChangeQuantity, OperationStatus::InProgress)
            }
            MarketplaceAction::Suspend => {
                require(sub.status == SubscriptionStatus::Subscribed, "Suspend")?;
                sub.status = SubscriptionStatus::Suspended;
                (Action::Suspend, OperationStatus::Succeeded)
            }
            MarketplaceAction::Reinstate => {
                require(sub.status == SubscriptionStatus::Suspended, "Reinstate")?;
                (Action::Reinstate, OperationStatus::InProgress)
            }
            MarketplaceAction::Renew => {
                require(sub.status == SubscriptionStatus::Subscribed, "Renew")?;
                let from = sub.term_end.map(|e| e + Duration::days(1)).unwrap_or(now);
                let (start, end) = term_dates(from, &sub.term_unit);
                sub.term_start = Some(start);
                sub.term_end = Some(end);
                (Action::Renew, OperationStatus::Succeeded)
            }
            MarketplaceAction::Unsubscribe => {
                require(
                    sub.status != SubscriptionStatus::Unsubscribed,
                    "Unsubscribe",
                )?;
                sub.status = SubscriptionStatus::Unsubscribed;
                sub.unsubscribed_at = Some(now);
                (Action::Unsubscribe, OperationStatus::Succeeded)
            }
        };
        sub.last_modified = now;
        let previous = matches!(op_action, Action::ChangePlan | Action::ChangeQuantity)
            .then_some(previous)
            .flatten();
        self.record_operation(
            subscription,
            op_action,
            op_status,
            RequestSource::Azure,
            previous,
            now,
        )
        .ok_or_else(|| ApiError::not_found("subscription not found"))
    }

    /// Settles an in-progress operation: `accept` applies it, otherwise it is reverted.
    /// Returns false when the operation was no longer in progress.
    pub fn settle_operation(
        &mut self,
        operation: Uuid,
        accept: bool,
        reason: Option<String>,
        now: OffsetDateTime,
    ) -> bool {
        let Some(op) = self.operations.iter_mut().find(|o| o.id == operation) else {
            return false;
        };
        if op.status != OperationStatus::InProgress {
            return false;
        }
        op.status = if accept {
            OperationStatus::Succeeded
        } else {
            OperationStatus::Failed
        };
        op.error_message = reason;
        let (action, sub_id, previous) = (op.action, op.subscription_id, op.previous.clone());
        if let Some(sub) = self.subscription_mut(sub_id) {
            match (action, accept) {
                (Action::Reinstate, true) => {
                    sub.status = SubscriptionStatus::Subscribed;
                    sub.last_modified = now;
                }
                (Action::ChangePlan | Action::ChangeQuantity, false) => {
                    if let Some((plan, quantity)) = previous {
                        sub.plan_id = plan;
                        sub.quantity = quantity;
                        sub.last_modified = now;
                    }
                }
                _ => {}
            }
        }
        true
    }
}

/// The quantity a plan takes: `None` for flat-rate plans, within [min, max] for per-seat ones.
pub fn check_quantity(plan: &PlanConfig, quantity: Option<i64>) -> Result<Option<i64>, String> {
    if !plan.is_price_per_seat {
        return match quantity {
            None => Ok(None),
            Some(_) => Err(format!("plan {} is not priced per seat", plan.id)),
        };
    }
    let q = quantity.unwrap_or(plan.min_quantity.unwrap_or(1));
    let min = plan.min_quantity.unwrap_or(1);
    let max = plan.max_quantity.unwrap_or(i64::from(i32::MAX));
    if q < min || q > max {
        return Err(format!(
            "quantity {q} is outside the plan's range {min}..={max}"
        ));
    }
    Ok(Some(q))
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

/// What the buyer (or Microsoft) can do from the marketplace side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarketplaceAction {
    ChangePlan(String),
    ChangeQuantity(i64),
    Suspend,
    Reinstate,
    Renew,
    Unsubscribe,
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn terms_end_the_day_before() {
        let (s, e) = term_dates(datetime!(2026-01-31 10:00 UTC), "P1M");
        assert_eq!(s, datetime!(2026-01-31 00:00 UTC));
        assert_eq!(e, datetime!(2026-02-27 00:00 UTC));
        let (_, e) = term_dates(datetime!(2026-03-01 10:00 UTC), "P1Y");
        assert_eq!(e, datetime!(2027-02-28 00:00 UTC));
    }
}
