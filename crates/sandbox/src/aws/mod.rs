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
//! calls [`AwsSandbox::send_subscription_event`]; [`AwsSandbox::renew`] and
//! [`AwsSandbox::replace`] supersede an agreement with a new one.
//!
//! Layout: `dispatch` routes a request to its service (`metering`, `entitlement`, `agreement`,
//! `sqs`) over the protocol it came in (`wire`, after `sigv4`); `lifecycle` is the buyer side
//! (purchases, agreement events) and `renewal` its renewals and replacements; `topics` and
//! `eventbridge` produce the notifications, `sns` signs them, `delivery` posts them over HTTP
//! with SNS's retry policy; `chaos` decides duplicates, order and delays when switched on;
//! `state` is what the sandbox remembers, `pages` the buyer and log pages, `fault_page` the
//! switch for faults (`crate::switch`).

mod agreement;
mod chaos;
mod config;
mod delivery;
mod dispatch;
mod entitlement;
mod eventbridge;
mod fault_page;
mod input;
mod lifecycle;
mod metering;
mod pages;
mod renewal;
mod search;
mod seed;
pub mod sigv4;
pub mod sns;
mod sqs;
mod state;
mod topics;
pub mod wire;

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post},
};
pub use chaos::DeliveryChaos;
pub use config::{
    AwsSandboxConfig, DimensionConfig, DimensionKind, IdentityMode, NotificationMode, OfferConfig,
    OfferKind, ProductConfig,
};
use marketlink_core::Clock;
use time::OffsetDateTime;

use self::state::{HttpSubscription, SandboxState};
pub use self::{
    lifecycle::Purchase,
    state::{
        Agreement, AgreementChange, AgreementLink, CallLogEntry, ChannelPartner, DeliveryOutcome,
        HttpDeliveryAttempt, InjectedError, MeteredRecord, SubscriptionAction, SubscriptionState,
    },
};

/// Maximum request body (BatchMeterUsage requests must be under 1 MB).
const MAX_BODY: usize = 1024 * 1024;
const CALL_LOG_CAP: usize = 1000;
const DELIVERY_LOG_CAP: usize = 1000;

/// The AWS Marketplace emulator: configuration plus in-memory state. `Send + Sync`; share it
/// with `Arc`.
pub struct AwsSandbox {
    config: AwsSandboxConfig,
    clock: Arc<dyn Clock>,
    state: Mutex<SandboxState>,
    /// Outages tests switched on (`start_outage`).
    outages: crate::outage::Outages,
    /// Faults of the scenario and the fault page (`/aws/faults`).
    switches: crate::switch::Switches,
    /// Itself, for work that outlives a call (SNS retries, chaos-delayed HTTP deliveries).
    me: Weak<AwsSandbox>,
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
            state.queues.entry(name.clone()).or_default();
        }
        if let Some(endpoint) = &config.sns_http_endpoint {
            subscribe_http_endpoint(&mut state, &config, endpoint);
        }
        state.chaos.set(config.delivery_chaos);
        let mut faults = config.faults.clone();
        crate::switch::validate_all(&mut faults, crate::switch::Side::Aws)?;
        let switches = crate::switch::Switches::from_scenario(&faults, clock.now());
        Ok(Arc::new_cyclic(|me| Self {
            config,
            clock,
            state: Mutex::new(state),
            outages: crate::outage::Outages::default(),
            switches,
            me: me.clone(),
        }))
    }

    /// Turn delivery chaos on (or off with `None`); the generator restarts from the seed.
    pub fn set_delivery_chaos(&self, chaos: Option<DeliveryChaos>) {
        self.lock().chaos.set(chaos);
    }

    pub fn delivery_chaos(&self) -> Option<DeliveryChaos> {
        self.lock().chaos.config
    }

    /// Every SNS HTTP(S) delivery attempt, oldest first (the last 1000).
    pub fn http_deliveries(&self) -> Vec<HttpDeliveryAttempt> {
        self.lock().http_deliveries.iter().cloned().collect()
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
            .route("/", post(dispatch::post_root))
            .route("/{account}/{queue}", post(dispatch::post_root))
            .route(
                "/service/{service}/operation/{operation}",
                post(dispatch::post_cbor),
            )
            .route(
                "/SimpleNotificationService-sandbox.pem",
                get(dispatch::get_cert),
            )
            .route("/aws/sns/confirm", get(pages::sns_confirm))
            .merge(pages::routes())
            .merge(fault_page::routes())
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(self.clone())
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

    /// Forgets all accepted usage, so the same records are first deliveries again: the flush
    /// benchmark's wire floor resends what the flush delivered, and must cost the sandbox what
    /// the flush did (storing a record, not just finding it).
    pub fn forget_metered_records(&self) {
        self.lock().ledger_clear();
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

    /// Starts an outage: every call of `operation` (e.g. `"BatchMeterUsage"`; `"*"`: every API
    /// call, SQS included; `"SigningCert"`: the SNS signing certificate) answers 503
    /// `ServiceUnavailable` or has its connection closed (`kind`), for `duration` of the
    /// sandbox clock or until [`Self::end_outages`].
    pub fn start_outage(
        &self,
        operation: &str,
        kind: crate::outage::OutageKind,
        duration: Option<std::time::Duration>,
    ) {
        let duration = duration.and_then(|d| time::Duration::try_from(d).ok());
        self.outages.start(operation, kind, duration, self.now());
    }

    /// Ends every outage.
    pub fn end_outages(&self) {
        self.outages.end();
    }

    /// Calls turned away by outages so far.
    pub fn outage_refusals(&self) -> u64 {
        self.outages.refused()
    }

    /// The faults of the scenario and the fault page, ended ones included, with what each
    /// caught.
    pub fn faults(&self) -> Vec<crate::switch::FaultView> {
        self.switches.list(self.now())
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
}

/// A pending HTTP subscription of `endpoint` to both topics of every SNS product (kept when the
/// loaded state already has it).
fn subscribe_http_endpoint(state: &mut SandboxState, config: &AwsSandboxConfig, endpoint: &str) {
    for p in &config.products {
        if p.notification_mode != NotificationMode::Sns {
            continue;
        }
        for topic in [
            topics::topic_arn(config, "subscription", &p.product_code),
            topics::topic_arn(config, "entitlement", &p.product_code),
        ] {
            if state
                .subscriptions
                .iter()
                .any(|s| s.topic_arn == topic && s.endpoint == endpoint)
            {
                continue;
            }
            state.subscriptions.push(HttpSubscription {
                subscription_arn: format!("{topic}:{}", uuid::Uuid::new_v4()),
                topic_arn: topic,
                endpoint: endpoint.to_owned(),
                token: random_id(64),
                confirmed: false,
                confirmation_sent: false,
                backlog: Vec::new(),
            });
        }
    }
}
