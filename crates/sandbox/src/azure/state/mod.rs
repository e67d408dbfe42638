//! In-memory marketplace state: subscriptions, landing tokens, operations, usage events, the call
//! log and webhook deliveries. Pure data and state transitions; HTTP lives elsewhere.
//!
//! `records` holds the record types and their JSON shapes, `terms` the plan rules (term dates,
//! seat quantities), `actions` the marketplace-side actions and how operations settle.

mod actions;
mod records;
mod terms;

use std::collections::{HashMap, VecDeque};

use time::OffsetDateTime;
use uuid::Uuid;

pub use self::{
    actions::MarketplaceAction,
    records::{
        AadIdentity, Action, AuthCode, CallLogEntry, LandingToken, Operation, OperationStatus,
        PurchaseRequest, RequestSource, Subscription, SubscriptionStatus, UsageRecord,
        WebhookAttempt, rfc3339,
    },
    terms::{check_quantity, term_dates},
};
use super::config::AzureSandboxConfig;

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
}
