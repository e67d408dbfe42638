//! AWS Marketplace emulator.
//!
//! One axum router serves, on one port:
//! - `POST /` dispatched by `X-Amz-Target`: `AWSMPMeteringService.*` (awsJson1.1),
//!   `AWSMPEntitlementService.GetEntitlements` (awsJson1.1, boto3 / older SDKs),
//!   `AWSMPCommerceService_v20200301.*` (awsJson1.0) and `AmazonSQS.*` (awsJson1.0);
//! - `POST /service/<Service>/operation/<Operation>` in Smithy RPC v2 CBOR (the current Rust
//!   `aws-sdk-marketplaceentitlement` and `aws-sdk-marketplaceagreement`);
//! - `GET /SimpleNotificationService-sandbox.pem` (SigningCertURL) and `GET /aws/sns/confirm`
//!   (SubscribeURL);
//! - the buyer pages under `/aws/buyer` and the call log under `/aws/calls`.
//!
//! Every API request must be SigV4-signed with the configured access key (default
//! `AKIASANDBOX` / `sandbox-secret`, region `us-east-1`); point the official SDK clients at the
//! sandbox with an endpoint override. The scenario (products, offers, dimensions, identity mode
//! classic|concurrent, notification mode sns|eventbridge) comes from [`AwsSandboxConfig`], which
//! `from_toml_str` reads from a TOML file (see `crates/sandbox/scenarios/aws-default.toml`).
//!
//! Lifecycle: a purchase (buyer page or [`AwsSandbox::purchase`]) creates an agreement and a
//! registration token; `subscribe-success` (SNS) or `Purchase Agreement Created` + `License
//! Updated` (EventBridge) follows after `subscribe_delay_ms` from the buyer page, or when a test
//! calls [`AwsSandbox::send_subscription_event`].

mod agreement;
mod config;
mod entitlement;
mod eventbridge;
mod metering;
mod pages;
pub mod sigv4;
pub mod sns;
mod sqs;
pub mod wire;

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State},
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{get, post},
};
pub use config::{
    AwsSandboxConfig, DimensionConfig, DimensionKind, IdentityMode, NotificationMode, OfferConfig,
    OfferKind, ProductConfig,
};
use marketlink_core::Clock;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use wire::{AwsError, Protocol};

/// Maximum request body (BatchMeterUsage requests must be under 1 MB).
const MAX_BODY: usize = 1024 * 1024;
const CALL_LOG_CAP: usize = 1000;

/// Where an agreement is in its SaaS lifecycle, as notified to the seller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscriptionState {
    /// Token issued, `subscribe-success` not sent yet.
    Pending,
    /// `subscribe-success` / Purchase Agreement Created sent.
    Subscribed,
    /// `subscribe-fail` sent.
    Failed,
    /// `unsubscribe-pending` / Purchase Agreement Ended sent: final metering window.
    UnsubscribePending,
    /// `unsubscribe-success` / License Deprovisioned sent: metering closed.
    Unsubscribed,
}

/// One buyer agreement (one purchase of one offer).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Agreement {
    pub agreement_id: String,
    pub product_code: String,
    pub offer_id: String,
    pub offer_kind: OfferKind,
    pub buyer_account_id: String,
    /// Classic customer identifier (stable per buyer account and product).
    pub customer_identifier: String,
    pub license_arn: String,
    pub state: SubscriptionState,
    pub created_at: OffsetDateTime,
    pub start_time: OffsetDateTime,
    pub end_time: Option<OffsetDateTime>,
    pub trial_end_time: Option<OffsetDateTime>,
    /// Contract / free-trial quantities per dimension (entitlements).
    pub quantities: BTreeMap<String, i64>,
    pub registration_token: String,
}

impl Agreement {
    pub fn meterable(&self) -> bool {
        matches!(
            self.state,
            SubscriptionState::Subscribed | SubscriptionState::UnsubscribePending
        )
    }

    fn agreement_status(&self) -> &'static str {
        match self.state {
            SubscriptionState::Pending | SubscriptionState::Subscribed => "ACTIVE",
            SubscriptionState::Failed => "TERMINATED",
            SubscriptionState::UnsubscribePending | SubscriptionState::Unsubscribed => "CANCELLED",
        }
    }
}

/// A usage record the sandbox accepted (its billing ledger), one per dedup key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeteredRecord {
    pub metering_record_id: String,
    pub product_code: String,
    pub agreement_id: String,
    pub customer_identifier: Option<String>,
    pub customer_aws_account_id: Option<String>,
    pub license_arn: Option<String>,
    pub dimension: String,
    /// The record's timestamp truncated to the hour (AWS de-duplicates per hour).
    pub hour: OffsetDateTime,
    pub timestamp: OffsetDateTime,
    /// Quantity as a normalized decimal string ("5", "0.25").
    pub quantity: String,
    pub usage_allocations: Option<Value>,
    pub accepted_at: OffsetDateTime,
}

/// One API call, for the call log page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallLogEntry {
    pub at: OffsetDateTime,
    pub service: String,
    pub operation: String,
    pub status: u16,
    pub summary: String,
}

/// An error the sandbox returns on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedError {
    /// `ThrottlingException` (SQS: `RequestThrottled`).
    Throttling,
    /// `InternalServiceErrorException` (agreement: `InternalServerException`).
    Internal,
    /// `DisabledApiException` (metering only).
    DisabledApi,
}

/// SNS lifecycle messages on the subscription topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionAction {
    SubscribeSuccess,
    SubscribeFail,
    UnsubscribePending,
    UnsubscribeSuccess,
}

impl SubscriptionAction {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionAction::SubscribeSuccess => "subscribe-success",
            SubscriptionAction::SubscribeFail => "subscribe-fail",
            SubscriptionAction::UnsubscribePending => "unsubscribe-pending",
            SubscriptionAction::UnsubscribeSuccess => "unsubscribe-success",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct QueuedMessage {
    message_id: String,
    body: String,
    md5: String,
    sent_at: OffsetDateTime,
    visible_at: OffsetDateTime,
    receive_count: u32,
    first_receive_at: Option<OffsetDateTime>,
    receipt_handle: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Queue {
    messages: Vec<QueuedMessage>,
    visibility_timeout_secs: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct HttpSubscription {
    topic_arn: String,
    endpoint: String,
    token: String,
    subscription_arn: String,
    confirmed: bool,
    confirmation_sent: bool,
    backlog: Vec<Map<String, Value>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SandboxState {
    agreements: BTreeMap<String, Agreement>,
    /// token → agreement id
    tokens: HashMap<String, String>,
    /// (buyer account, product) → customer identifier
    customer_ids: HashMap<String, String>,
    ledger: Vec<MeteredRecord>,
    queues: BTreeMap<String, Queue>,
    subscriptions: Vec<HttpSubscription>,
    #[serde(skip)]
    call_log: VecDeque<CallLogEntry>,
    #[serde(skip)]
    injected: Vec<(String, InjectedError, u32)>,
    /// Ledger position by dedup key, so BatchMeterUsage does not scan the whole ledger.
    #[serde(skip)]
    ledger_index: HashMap<LedgerKey, usize>,
    /// Agreement ids by `ci:<CustomerIdentifier>`, `arn:<LicenseArn>` and `acct:<account>`.
    #[serde(skip)]
    agreement_index: HashMap<String, Vec<String>>,
    /// How many agreements `agreement_index` was built from (summing its lists on every
    /// lookup cost O(agreements) per metered record).
    #[serde(skip)]
    agreement_indexed: usize,
}

/// What AWS de-duplicates usage on: product, dimension, hour and the buyer's identity.
pub(crate) type LedgerKey = (
    String,
    String,
    OffsetDateTime,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl SandboxState {
    fn ledger_key(m: &MeteredRecord) -> LedgerKey {
        (
            m.product_code.clone(),
            m.dimension.clone(),
            m.hour,
            m.customer_identifier.clone(),
            m.customer_aws_account_id.clone(),
            m.license_arn.clone(),
        )
    }

    /// The ledger entry under `key`, rebuilding the index after a state file was loaded.
    pub(crate) fn ledger_find(&mut self, key: &LedgerKey) -> Option<&MeteredRecord> {
        if self.ledger_index.len() != self.ledger.len() {
            self.ledger_index = self
                .ledger
                .iter()
                .enumerate()
                .map(|(i, m)| (Self::ledger_key(m), i))
                .collect();
        }
        self.ledger_index.get(key).map(|&i| &self.ledger[i])
    }

    pub(crate) fn ledger_push(&mut self, record: MeteredRecord) {
        self.ledger_index
            .insert(Self::ledger_key(&record), self.ledger.len());
        self.ledger.push(record);
    }

    /// Agreements a record may bill, looked up by one of the index keys. The index is rebuilt
    /// whenever the number of agreements changed (purchases, a loaded state file).
    /// Ids only: a record needs a few fields of one of them, not copies of all.
    pub(crate) fn agreements_for(&mut self, key: &str) -> Vec<String> {
        if self.agreement_indexed != self.agreements.len() || self.agreement_index.is_empty() {
            self.agreement_indexed = self.agreements.len();
            self.agreement_index.clear();
            for a in self.agreements.values() {
                for k in [
                    format!("ci:{}", a.customer_identifier),
                    format!("arn:{}", a.license_arn),
                    format!("acct:{}", a.buyer_account_id),
                ] {
                    self.agreement_index
                        .entry(k)
                        .or_default()
                        .push(a.agreement_id.clone());
                }
            }
        }
        self.agreement_index.get(key).cloned().unwrap_or_default()
    }
}

/// The AWS Marketplace emulator: configuration plus in-memory state. `Send + Sync`; share it
/// with `Arc`.
pub struct AwsSandbox {
    config: AwsSandboxConfig,
    clock: Arc<dyn Clock>,
    state: Mutex<SandboxState>,
}

/// A purchase made through [`AwsSandbox::purchase`].
#[derive(Debug, Clone)]
pub struct Purchase {
    pub registration_token: String,
    pub agreement_id: String,
    pub customer_identifier: String,
    pub buyer_account_id: String,
    pub license_arn: String,
    pub product_code: String,
    pub offer_id: String,
    pub offer_kind: OfferKind,
}

fn random_id(len: usize) -> String {
    let mut s = String::new();
    while s.len() < len {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s.truncate(len);
    s
}

impl AwsSandbox {
    /// Build the sandbox (creates the queues and, when `sns_http_endpoint` is set, the pending
    /// HTTP subscriptions; loads `state_file` when it exists).
    pub fn new(config: AwsSandboxConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<Self>> {
        config.validate()?;
        // Fail early if the signing certificate cannot be produced.
        sns::signer()?;
        let mut state = match &config.state_file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path)?;
                serde_json::from_str::<SandboxState>(&text)?
            }
            _ => SandboxState::default(),
        };
        for name in [&config.sns_queue_name, &config.eventbridge_queue_name] {
            state.queues.entry(name.clone()).or_insert_with(|| Queue {
                messages: Vec::new(),
                visibility_timeout_secs: 30,
            });
        }
        if let Some(endpoint) = &config.sns_http_endpoint {
            for p in &config.products {
                if p.notification_mode != NotificationMode::Sns {
                    continue;
                }
                for topic in [
                    topic_arn(&config, "subscription", &p.product_code),
                    topic_arn(&config, "entitlement", &p.product_code),
                ] {
                    if state
                        .subscriptions
                        .iter()
                        .any(|s| s.topic_arn == topic && &s.endpoint == endpoint)
                    {
                        continue;
                    }
                    state.subscriptions.push(HttpSubscription {
                        subscription_arn: format!("{topic}:{}", uuid::Uuid::new_v4()),
                        topic_arn: topic,
                        endpoint: endpoint.clone(),
                        token: random_id(64),
                        confirmed: false,
                        confirmation_sent: false,
                        backlog: Vec::new(),
                    });
                }
            }
        }
        Ok(Arc::new(Self {
            config,
            clock,
            state: Mutex::new(state),
        }))
    }

    pub fn config(&self) -> &AwsSandboxConfig {
        &self.config
    }

    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    fn lock(&self) -> MutexGuard<'_, SandboxState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, state: &SandboxState) {
        if let Some(path) = &self.config.state_file {
            match serde_json::to_vec_pretty(state) {
                Ok(bytes) => {
                    if let Err(e) = std::fs::write(path, bytes) {
                        tracing::warn!(error = %e, "cannot save the AWS sandbox state");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot serialize the AWS sandbox state"),
            }
        }
    }

    /// All routes on one router; serve it on one port.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", post(post_root))
            .route("/{account}/{queue}", post(post_root))
            .route("/service/{service}/operation/{operation}", post(post_cbor))
            .route("/SimpleNotificationService-sandbox.pem", get(get_cert))
            .route("/aws/sns/confirm", get(pages::sns_confirm))
            .merge(pages::routes())
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(self.clone())
    }

    // ------------------------------------------------------------------ public helpers

    /// Create an agreement for `offer` of `product_code` for `buyer_account_id` and return its
    /// registration token (what the buyer's browser posts to the landing page).
    pub fn issue_registration_token(
        &self,
        product_code: &str,
        offer: OfferKind,
        buyer_account_id: &str,
    ) -> anyhow::Result<String> {
        Ok(self
            .purchase(product_code, offer, buyer_account_id)?
            .registration_token)
    }

    /// Like [`Self::issue_registration_token`], returning every identifier of the purchase.
    pub fn purchase(
        &self,
        product_code: &str,
        offer: OfferKind,
        buyer_account_id: &str,
    ) -> anyhow::Result<Purchase> {
        let product = self
            .config
            .product(product_code)
            .ok_or_else(|| anyhow::anyhow!("unknown product code {product_code}"))?;
        let offer_cfg = product
            .offers
            .iter()
            .find(|o| o.kind == offer)
            .ok_or_else(|| anyhow::anyhow!("product {product_code} has no {offer:?} offer"))?;
        self.purchase_offer(product, offer_cfg, buyer_account_id)
    }

    fn purchase_offer(
        &self,
        product: &ProductConfig,
        offer: &OfferConfig,
        buyer_account_id: &str,
    ) -> anyhow::Result<Purchase> {
        if buyer_account_id.len() != 12 || !buyer_account_id.bytes().all(|b| b.is_ascii_digit()) {
            anyhow::bail!("buyer account id must be 12 digits");
        }
        let now = self.now();
        let mut st = self.lock();
        let key = format!("{buyer_account_id}/{}", product.product_code);
        let customer_identifier = st
            .customer_ids
            .entry(key)
            .or_insert_with(|| random_id(11).to_uppercase())
            .clone();
        let agreement_id = format!("agmt-{}", random_id(25));
        let license_arn = format!(
            "arn:aws:license-manager::{}:license/l-{}",
            self.config.seller_account_id,
            random_id(32)
        );
        let token = format!("sandbox-token-{}", random_id(48));
        let (end_time, trial_end_time) = match offer.kind {
            OfferKind::Subscription => (None, None),
            OfferKind::Contract | OfferKind::ContractWithConsumption => {
                let months = i64::from(offer.duration_months.unwrap_or(12));
                (Some(now + time::Duration::days(30 * months)), None)
            }
            OfferKind::FreeTrial => {
                let days = i64::from(offer.trial_days.unwrap_or(30));
                (None, Some(now + time::Duration::days(days)))
            }
        };
        let agreement = Agreement {
            agreement_id: agreement_id.clone(),
            product_code: product.product_code.clone(),
            offer_id: offer.id.clone(),
            offer_kind: offer.kind,
            buyer_account_id: buyer_account_id.to_owned(),
            customer_identifier: customer_identifier.clone(),
            license_arn: license_arn.clone(),
            state: SubscriptionState::Pending,
            created_at: now,
            start_time: now,
            end_time,
            trial_end_time,
            quantities: offer.quantities.clone(),
            registration_token: token.clone(),
        };
        st.tokens.insert(token.clone(), agreement_id.clone());
        st.agreements.insert(agreement_id.clone(), agreement);
        self.persist(&st);
        Ok(Purchase {
            registration_token: token,
            agreement_id,
            customer_identifier,
            buyer_account_id: buyer_account_id.to_owned(),
            license_arn,
            product_code: product.product_code.clone(),
            offer_id: offer.id.clone(),
            offer_kind: offer.kind,
        })
    }

    pub fn agreement(&self, agreement_id: &str) -> Option<Agreement> {
        self.lock().agreements.get(agreement_id).cloned()
    }

    pub fn agreements(&self) -> Vec<Agreement> {
        self.lock().agreements.values().cloned().collect()
    }

    /// The sandbox's ledger of accepted usage (one entry per customer + dimension + hour).
    pub fn metered_records(&self) -> Vec<MeteredRecord> {
        self.lock().ledger.clone()
    }

    pub fn call_log(&self) -> Vec<CallLogEntry> {
        self.lock().call_log.iter().cloned().collect()
    }

    /// Make the next `times` calls of `operation` (e.g. `"BatchMeterUsage"`, or `"*"` for any
    /// operation) fail with `error`.
    pub fn inject_errors(&self, operation: &str, error: InjectedError, times: u32) {
        self.lock()
            .injected
            .push((operation.to_owned(), error, times));
    }

    /// URL of a queue of this sandbox (`<public_base_url>/<seller account>/<name>`).
    pub fn queue_url(&self, name: &str) -> String {
        format!(
            "{}/{}/{name}",
            self.config.public_base_url.trim_end_matches('/'),
            self.config.seller_account_id
        )
    }

    pub fn sns_queue_url(&self) -> String {
        self.queue_url(&self.config.sns_queue_name)
    }

    pub fn eventbridge_queue_url(&self) -> String {
        self.queue_url(&self.config.eventbridge_queue_name)
    }

    /// The PEM certificate served at the SigningCertURL.
    pub fn signing_cert_pem(&self) -> anyhow::Result<String> {
        Ok(sns::signer()?.cert_pem.clone())
    }

    pub fn signing_cert_url(&self) -> String {
        format!(
            "{}/SimpleNotificationService-sandbox.pem",
            self.config.public_base_url.trim_end_matches('/')
        )
    }

    /// Move an agreement through its lifecycle and notify the seller the way the product is
    /// configured: SNS (subscription topic, queue + HTTP) or EventBridge events (queue).
    /// SubscribeSuccess → Purchase Agreement Created + License Updated; UnsubscribePending →
    /// Purchase Agreement Ended; UnsubscribeSuccess → License Deprovisioned; SubscribeFail has
    /// no EventBridge event.
    pub async fn send_subscription_event(
        &self,
        agreement_id: &str,
        action: SubscriptionAction,
    ) -> anyhow::Result<()> {
        let (agreement, product) = {
            let mut st = self.lock();
            let ag = st
                .agreements
                .get_mut(agreement_id)
                .ok_or_else(|| anyhow::anyhow!("unknown agreement {agreement_id}"))?;
            ag.state = match action {
                SubscriptionAction::SubscribeSuccess => SubscriptionState::Subscribed,
                SubscriptionAction::SubscribeFail => SubscriptionState::Failed,
                SubscriptionAction::UnsubscribePending => SubscriptionState::UnsubscribePending,
                SubscriptionAction::UnsubscribeSuccess => SubscriptionState::Unsubscribed,
            };
            if matches!(
                action,
                SubscriptionAction::UnsubscribePending | SubscriptionAction::UnsubscribeSuccess
            ) && ag.end_time.is_none_or(|e| e > self.now())
            {
                ag.end_time = Some(self.now());
            }
            let ag = ag.clone();
            self.persist(&st);
            let product = self
                .config
                .product(&ag.product_code)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("unknown product {}", ag.product_code))?;
            (ag, product)
        };
        match product.notification_mode {
            NotificationMode::Sns => {
                let message = json!({
                    "action": action.as_str(),
                    "customer-identifier": agreement.customer_identifier,
                    "product-code": agreement.product_code,
                    "offer-identifier": agreement.offer_id,
                    "isFreeTrialTermPresent": if agreement.offer_kind == OfferKind::FreeTrial { "true" } else { "false" },
                });
                self.sns_publish("subscription", &product.product_code, &message.to_string())
                    .await
            }
            NotificationMode::Eventbridge => {
                use eventbridge::EventKind;
                let kinds: &[EventKind] = match action {
                    SubscriptionAction::SubscribeSuccess => {
                        &[EventKind::Created, EventKind::LicenseUpdated]
                    }
                    SubscriptionAction::SubscribeFail => &[],
                    SubscriptionAction::UnsubscribePending => &[EventKind::Ended],
                    SubscriptionAction::UnsubscribeSuccess => &[EventKind::LicenseDeprovisioned],
                };
                for kind in kinds {
                    self.eventbridge_publish(*kind, &agreement, &product);
                }
                Ok(())
            }
        }
    }

    /// Change an agreement's contract quantities and notify `entitlement-updated` (SNS) or
    /// Purchase Agreement Amended + License Updated (EventBridge).
    pub async fn update_entitlements(
        &self,
        agreement_id: &str,
        quantities: &[(&str, i64)],
    ) -> anyhow::Result<()> {
        let (agreement, product) = {
            let mut st = self.lock();
            let ag = st
                .agreements
                .get_mut(agreement_id)
                .ok_or_else(|| anyhow::anyhow!("unknown agreement {agreement_id}"))?;
            let product = self
                .config
                .product(&ag.product_code)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("unknown product {}", ag.product_code))?;
            for (dim, qty) in quantities {
                if product.dimension(dim).is_none() {
                    anyhow::bail!("unknown dimension {dim}");
                }
                ag.quantities.insert((*dim).to_owned(), *qty);
            }
            let ag = ag.clone();
            self.persist(&st);
            (ag, product)
        };
        match product.notification_mode {
            NotificationMode::Sns => {
                let message = json!({
                    "action": "entitlement-updated",
                    "customer-identifier": agreement.customer_identifier,
                    "product-code": agreement.product_code,
                });
                self.sns_publish("entitlement", &product.product_code, &message.to_string())
                    .await
            }
            NotificationMode::Eventbridge => {
                self.eventbridge_publish(eventbridge::EventKind::Amended, &agreement, &product);
                self.eventbridge_publish(
                    eventbridge::EventKind::LicenseUpdated,
                    &agreement,
                    &product,
                );
                Ok(())
            }
        }
    }

    /// Send the SubscriptionConfirmation of every HTTP subscription not confirmed yet.
    pub async fn request_sns_confirmations(&self) -> anyhow::Result<()> {
        let pending: Vec<(String, Map<String, Value>)> = {
            let mut st = self.lock();
            let mut out = Vec::new();
            for sub in st.subscriptions.iter_mut().filter(|s| !s.confirmed) {
                sub.confirmation_sent = true;
                out.push((sub.endpoint.clone(), self.confirmation_envelope(sub)?));
            }
            out
        };
        for (endpoint, env) in pending {
            self.deliver_logged(&endpoint, &env).await;
        }
        Ok(())
    }

    /// Publish a raw message on `aws-mp-<kind>-notification-<product>` (kind = subscription |
    /// entitlement): to the SNS queue and to the HTTP subscription (queued while unconfirmed;
    /// the SubscriptionConfirmation goes first).
    pub async fn sns_publish(
        &self,
        kind: &str,
        product_code: &str,
        message: &str,
    ) -> anyhow::Result<()> {
        let topic = topic_arn(&self.config, kind, product_code);
        let mut deliveries: Vec<(String, Map<String, Value>)> = Vec::new();
        {
            let mut st = self.lock();
            // SQS subscription (auto-confirmed): one envelope per subscription, own MessageId.
            let env = self.notification_envelope(&topic, message, None)?;
            let body = Value::Object(env).to_string();
            self.push_queue_message(&mut st, &self.config.sns_queue_name.clone(), body);
            for i in 0..st.subscriptions.len() {
                if st.subscriptions[i].topic_arn != topic {
                    continue;
                }
                let env = self.notification_envelope(&topic, message, None)?;
                let sub = &mut st.subscriptions[i];
                if sub.confirmed {
                    deliveries.push((sub.endpoint.clone(), env));
                } else {
                    sub.backlog.push(env);
                    if !sub.confirmation_sent {
                        sub.confirmation_sent = true;
                        let conf = self.confirmation_envelope(sub)?;
                        deliveries.push((sub.endpoint.clone(), conf));
                    }
                }
            }
            self.persist(&st);
        }
        for (endpoint, env) in deliveries {
            self.deliver_logged(&endpoint, &env).await;
        }
        Ok(())
    }

    async fn deliver_logged(&self, endpoint: &str, env: &Map<String, Value>) {
        let kind = env
            .get("Type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut result = Err(String::new());
        for attempt in 0..3u32 {
            result = sns::deliver(endpoint, env).await;
            if matches!(result, Ok(s) if (200..300).contains(&s)) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(
                200 * u64::from(attempt + 1),
            ))
            .await;
        }
        let (status, summary) = match result {
            Ok(s) => (s, format!("{kind} → {endpoint}: HTTP {s}")),
            Err(e) => (0, format!("{kind} → {endpoint}: {e}")),
        };
        self.log_call("sns", "HttpDelivery", status, summary);
    }

    fn sign_envelope(&self, mut env: Map<String, Value>) -> Map<String, Value> {
        let version = self.config.sns_signature_version;
        let data = sns::string_to_sign(&env);
        let signature = match sns::signer() {
            Ok(s) => s.sign(version, data.as_bytes()),
            Err(_) => String::new(),
        };
        env.insert(
            "SignatureVersion".into(),
            Value::String(version.to_string()),
        );
        env.insert("Signature".into(), Value::String(signature));
        env.insert(
            "SigningCertURL".into(),
            Value::String(self.signing_cert_url()),
        );
        env
    }

    fn sns_timestamp(&self) -> String {
        let f = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        self.now()
            .to_offset(time::UtcOffset::UTC)
            .format(&f)
            .unwrap_or_default()
    }

    fn notification_envelope(
        &self,
        topic: &str,
        message: &str,
        subject: Option<&str>,
    ) -> anyhow::Result<Map<String, Value>> {
        let message_id = uuid::Uuid::new_v4().to_string();
        let mut env = Map::new();
        env.insert("Type".into(), "Notification".into());
        env.insert("MessageId".into(), message_id.into());
        env.insert("TopicArn".into(), topic.into());
        if let Some(s) = subject {
            env.insert("Subject".into(), s.into());
        }
        env.insert("Message".into(), message.into());
        env.insert("Timestamp".into(), self.sns_timestamp().into());
        let mut env = self.sign_envelope(env);
        env.insert(
            "UnsubscribeURL".into(),
            format!(
                "{}/aws/sns/unsubscribe?SubscriptionArn={topic}:sandbox",
                self.config.public_base_url.trim_end_matches('/')
            )
            .into(),
        );
        Ok(env)
    }

    fn confirmation_envelope(&self, sub: &HttpSubscription) -> anyhow::Result<Map<String, Value>> {
        let base = self.config.public_base_url.trim_end_matches('/');
        let subscribe_url = format!(
            "{base}/aws/sns/confirm?Action=ConfirmSubscription&TopicArn={}&Token={}",
            sub.topic_arn, sub.token
        );
        let mut env = Map::new();
        env.insert("Type".into(), "SubscriptionConfirmation".into());
        env.insert("MessageId".into(), uuid::Uuid::new_v4().to_string().into());
        env.insert("Token".into(), sub.token.clone().into());
        env.insert("TopicArn".into(), sub.topic_arn.clone().into());
        env.insert(
            "Message".into(),
            format!(
                "You have chosen to subscribe to the topic {}.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
                sub.topic_arn
            )
            .into(),
        );
        env.insert("SubscribeURL".into(), subscribe_url.into());
        env.insert("Timestamp".into(), self.sns_timestamp().into());
        Ok(self.sign_envelope(env))
    }

    /// Confirm an HTTP subscription (GET of the SubscribeURL); flushes its backlog.
    pub async fn confirm_subscription(&self, topic_arn: &str, token: &str) -> Option<String> {
        let (endpoint, backlog, arn) = {
            let mut st = self.lock();
            let sub = st
                .subscriptions
                .iter_mut()
                .find(|s| s.topic_arn == topic_arn && s.token == token)?;
            sub.confirmed = true;
            let backlog = std::mem::take(&mut sub.backlog);
            let out = (sub.endpoint.clone(), backlog, sub.subscription_arn.clone());
            self.persist(&st);
            out
        };
        self.log_call(
            "sns",
            "ConfirmSubscription",
            200,
            format!("{topic_arn} → {endpoint}"),
        );
        for env in backlog {
            self.deliver_logged(&endpoint, &env).await;
        }
        Some(arn)
    }

    fn push_queue_message(&self, st: &mut SandboxState, queue: &str, body: String) {
        use md5::{Digest, Md5};
        let now = self.now();
        let q = st.queues.entry(queue.to_owned()).or_insert_with(|| Queue {
            messages: Vec::new(),
            visibility_timeout_secs: 30,
        });
        q.messages.push(QueuedMessage {
            message_id: uuid::Uuid::new_v4().to_string(),
            md5: hex::encode(Md5::digest(body.as_bytes())),
            body,
            sent_at: now,
            visible_at: now,
            receive_count: 0,
            first_receive_at: None,
            receipt_handle: None,
        });
    }

    fn eventbridge_publish(
        &self,
        kind: eventbridge::EventKind,
        agreement: &Agreement,
        product: &ProductConfig,
    ) {
        let event = eventbridge::event(self, kind, agreement, product);
        let mut st = self.lock();
        let queue = self.config.eventbridge_queue_name.clone();
        self.push_queue_message(&mut st, &queue, event.to_string());
        self.persist(&st);
        drop(st);
        self.log_call(
            "events",
            "PutEvents",
            200,
            format!("{} for {}", kind.detail_type(), agreement.agreement_id),
        );
    }

    fn log_call(&self, service: &str, operation: &str, status: u16, summary: String) {
        tracing::debug!(service, operation, status, %summary, "AWS sandbox call");
        let entry = CallLogEntry {
            at: self.now(),
            service: service.to_owned(),
            operation: operation.to_owned(),
            status,
            summary,
        };
        let mut st = self.lock();
        if st.call_log.len() >= CALL_LOG_CAP {
            st.call_log.pop_front();
        }
        st.call_log.push_back(entry);
    }

    fn take_injected(&self, operation: &str) -> Option<InjectedError> {
        let mut st = self.lock();
        let idx = st
            .injected
            .iter()
            .position(|(op, _, n)| *n > 0 && (op == operation || op == "*"))?;
        let entry = &mut st.injected[idx];
        entry.2 -= 1;
        let err = entry.1;
        if entry.2 == 0 {
            st.injected.remove(idx);
        }
        Some(err)
    }

    // ------------------------------------------------------------------ dispatch

    #[expect(clippy::too_many_arguments, reason = "the parts of one HTTP request")]
    async fn handle(
        &self,
        protocol: Protocol,
        service: Service,
        operation: &str,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response {
        let request_id = uuid::Uuid::new_v4().to_string();
        let result = self
            .handle_inner(protocol, service, operation, method, uri, headers, body)
            .await;
        let (response, status, summary) = match result {
            Ok((value, summary)) => (
                wire::success(protocol, &request_id, &wire::strip_nulls(value)),
                200,
                summary,
            ),
            Err(e) => (
                wire::error_response(protocol, &request_id, &e),
                e.status.as_u16(),
                format!("{}: {}", e.code, e.message),
            ),
        };
        self.log_call(service.name(), operation, status, summary);
        response
    }

    #[expect(clippy::too_many_arguments, reason = "the parts of one HTTP request")]
    async fn handle_inner(
        &self,
        protocol: Protocol,
        service: Service,
        operation: &str,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(Value, String), AwsError> {
        let creds = sigv4::Credentials {
            access_key_id: &self.config.access_key_id,
            secret_access_key: &self.config.secret_access_key,
            region: &self.config.region,
            max_skew: self.config.sigv4_max_skew_secs.map(time::Duration::seconds),
        };
        let flavor = if service == Service::Sqs {
            sigv4::ErrorFlavor::Sqs
        } else {
            sigv4::ErrorFlavor::Marketplace
        };
        sigv4::verify(
            &creds,
            flavor,
            method,
            uri.path(),
            uri.query(),
            headers,
            body,
            self.now(),
        )?;
        if let Some(injected) = self.take_injected(operation) {
            return Err(service.injected_error(injected));
        }
        let input = wire::parse_body(protocol, body)?;
        match service {
            Service::Metering => self.metering(operation, &input),
            Service::Entitlement => self.entitlement(operation, &input),
            Service::Agreement => self.agreement_op(operation, &input),
            Service::Sqs => self.sqs(operation, &input).await,
        }
    }
}

fn topic_arn(config: &AwsSandboxConfig, kind: &str, product_code: &str) -> String {
    format!(
        "arn:aws:sns:{}:{}:aws-mp-{kind}-notification-{product_code}",
        config.region, config.seller_account_id
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Metering,
    Entitlement,
    Agreement,
    Sqs,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Metering => "metering",
            Service::Entitlement => "entitlement",
            Service::Agreement => "agreement",
            Service::Sqs => "sqs",
        }
    }

    fn injected_error(self, e: InjectedError) -> AwsError {
        match (self, e) {
            (Service::Sqs, InjectedError::Throttling) => {
                AwsError::bad_request("RequestThrottled", "Request is throttled.")
                    .with_query_error("RequestThrottled", "Sender")
            }
            (Service::Sqs, _) => AwsError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "We encountered an internal error. Please try again.",
            )
            .with_query_error("InternalError", "Receiver"),
            (Service::Agreement, InjectedError::Throttling) => AwsError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "ThrottlingException",
                "Rate exceeded",
            ),
            (Service::Agreement, _) => AwsError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerException",
                "Internal server error",
            ),
            (_, InjectedError::Throttling) => {
                AwsError::bad_request("ThrottlingException", "Rate exceeded")
            }
            (Service::Metering, InjectedError::DisabledApi) => {
                AwsError::bad_request("DisabledApiException", "The API is disabled in the Region.")
            }
            _ => AwsError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServiceErrorException",
                "An internal error has occurred. Retry your request.",
            ),
        }
    }
}

async fn post_root(
    State(sb): State<Arc<AwsSandbox>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (prefix, op) = target.split_once('.').unwrap_or((target, ""));
    let (protocol, service) = match prefix {
        "AWSMPMeteringService" => (Protocol::AwsJson11, Service::Metering),
        "AWSMPEntitlementService" => (Protocol::AwsJson11, Service::Entitlement),
        "AWSMPCommerceService_v20200301" => (Protocol::AwsJson10, Service::Agreement),
        "AmazonSQS" => (Protocol::AwsJson10, Service::Sqs),
        _ => {
            let err = AwsError::bad_request(
                "UnknownOperationException",
                format!("Unknown X-Amz-Target {target:?}"),
            );
            sb.log_call("?", target, 400, err.message.clone());
            return wire::error_response(Protocol::AwsJson11, "-", &err);
        }
    };
    let op = op.to_owned();
    sb.handle(protocol, service, &op, &method, &uri, &headers, &body)
        .await
}

async fn post_cbor(
    State(sb): State<Arc<AwsSandbox>>,
    Path((service_name, operation)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let service = match service_name.as_str() {
        "AWSMPEntitlementService" => Service::Entitlement,
        "AWSMPCommerceService_v20200301" => Service::Agreement,
        _ => {
            let err = AwsError::new(
                StatusCode::NOT_FOUND,
                "UnknownOperationException",
                format!("Unknown service {service_name}"),
            );
            return wire::error_response(Protocol::RpcV2Cbor, "-", &err);
        }
    };
    if headers.get("smithy-protocol").and_then(|v| v.to_str().ok()) != Some("rpc-v2-cbor") {
        let err = AwsError::bad_request(
            "SerializationException",
            "Missing or invalid smithy-protocol header (expected rpc-v2-cbor)",
        );
        return wire::error_response(Protocol::RpcV2Cbor, "-", &err);
    }
    sb.handle(
        Protocol::RpcV2Cbor,
        service,
        &operation,
        &method,
        &uri,
        &headers,
        &body,
    )
    .await
}

async fn get_cert() -> Response {
    match sns::signer() {
        Ok(s) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/x-x509-ca-cert",
            )],
            s.cert_pem.clone(),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Helpers to read request members.
pub(crate) mod input {
    use serde_json::Value;

    use super::wire::AwsError;

    pub fn opt_str<'a>(v: &'a Value, key: &str) -> Result<Option<&'a str>, AwsError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(AwsError::serialization(format!("{key} must be a string"))),
        }
    }

    pub fn req_str<'a>(
        v: &'a Value,
        key: &str,
        validation_code: &str,
    ) -> Result<&'a str, AwsError> {
        opt_str(v, key)?.ok_or_else(|| {
            AwsError::bad_request(
                validation_code,
                format!("1 validation error detected: Value null at '{key}' failed to satisfy constraint: Member must not be null"),
            )
        })
    }

    pub fn opt_i64(v: &Value, key: &str) -> Result<Option<i64>, AwsError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| AwsError::serialization(format!("{key} must be an integer"))),
            Some(_) => Err(AwsError::serialization(format!("{key} must be a number"))),
        }
    }
}
