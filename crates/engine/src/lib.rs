//! marketlink-engine: every use case, marketplace-neutral (ADR 0004, ADR 0012).
//!
//! The buyer's way in (`landing`, `signup`, `onboarding`, `accounts`, `changes`), the
//! operator's and the vendor's (`admin`, `people`, `api_keys`, `tenants`, `audit`, `health`),
//! verified sign-up addresses and the mail behind them (`verification`, `mail`),
//! notifications (`receive`, `inbox`, `apply`), what we tell marketplaces (`outbox`),
//! `metering`, `entitlements` (and `checks`), `reconcile`, and the background `worker`s. Web and the CLI
//! call these methods; they never reach the store themselves. Providers are reached only
//! through `Arc<dyn MarketplaceProvider>`, and what differs per marketplace comes from their
//! declared `rules()`; the database only through `marketlink-store`.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
pub mod admin;
mod answered;
pub mod api_keys;
mod apply;
pub mod approvals;
pub mod audit;
pub mod backoff;
mod changes;
pub mod checks;
mod converge;
mod directory;
pub mod entitlements;
mod follow;
pub mod health;
mod inbox;
mod landing;
pub mod mail;
pub mod metering;
mod onboarding;
mod outbox;
pub mod people;
mod policy;
mod providers;
mod receive;
pub mod reconcile;
pub mod retention;
mod sessions;
mod signup;
pub mod tenants;
pub mod verification;
pub mod webhooks;
pub mod worker;

use std::sync::Arc;

use marketlink_core::{Catalog, Clock};
use marketlink_store::Store;
use tokio::sync::Notify;

use crate::metering::MeteringSettings;

pub use crate::{
    accounts::{AccountOverview, SignInCandidate, SubscriptionDetail},
    apply::{ApplyOutcome, apply_event},
    audit::Actor,
    changes::{ChangeError, VendorChange, may_change_subscriptions},
    inbox::InboxRun,
    landing::LandingError,
    onboarding::{ACTIVATE_JOB, ClaimError},
    outbox::OutboxRun,
    policy::ChangePolicy,
    providers::Providers,
    receive::{ReceiveError, Received},
    signup::{ContactError, ContactRequest, NewAccount, SignUpError},
};

/// Everything the use cases need. Cheap to share behind an `Arc`.
pub struct Engine {
    pub store: Store,
    pub providers: Providers,
    pub clock: Arc<dyn Clock>,
    pub catalog: Arc<Catalog>,
    pub policy: ChangePolicy,
    /// Wakes the inbox worker when a message arrives, so marketplace deadlines (Microsoft's
    /// 10 s to answer a plan change) are met without a tight polling loop.
    pub inbox_ready: Arc<Notify>,
    /// Wakes the outbox worker when a job is queued (the buyer waits for activation).
    pub outbox_ready: Arc<Notify>,
    /// Usage ingest and flush settings (`[metering]`); see [`Engine::with_metering`].
    pub metering: MeteringSettings,
    /// Group commit of usage ingest (one writer per engine).
    pub(crate) ingest_writer: metering::IngestWriter,
    /// Every tenant's subscriptions in memory, for the entitlement check API.
    pub entitlements: Arc<entitlements::EntitlementIndex>,
    /// Provisioning webhooks to the vendor's product, when configured.
    pub webhooks: Option<webhooks::WebhookSettings>,
    /// Outgoing mail (`[email]`); `None`: nothing is mailed and operators confirm addresses.
    pub mailer: Option<mail::Mailer>,
    /// HTTP client for the vendor's webhook endpoint.
    pub http: reqwest::Client,
    /// Recent answers to landing tokens (see `landing`).
    pub(crate) resolutions: landing::ResolutionCache,
}

impl Engine {
    pub fn new(
        store: Store,
        providers: Providers,
        clock: Arc<dyn Clock>,
        catalog: Arc<Catalog>,
        policy: ChangePolicy,
    ) -> Self {
        Self {
            store,
            providers,
            clock,
            catalog: catalog.clone(),
            policy,
            inbox_ready: Arc::new(Notify::new()),
            outbox_ready: Arc::new(Notify::new()),
            metering: MeteringSettings::default(),
            ingest_writer: metering::IngestWriter::default(),
            entitlements: Arc::new(entitlements::EntitlementIndex::new(catalog.clone())),
            webhooks: None,
            mailer: None,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            resolutions: landing::resolution_cache(),
        }
    }

    /// Replaces the metering settings.
    pub fn with_metering(mut self, metering: MeteringSettings) -> Self {
        self.metering = metering;
        self
    }

    pub fn with_webhooks(mut self, webhooks: Option<webhooks::WebhookSettings>) -> Self {
        self.webhooks = webhooks;
        self
    }

    pub fn with_mailer(mut self, mailer: Option<mail::Mailer>) -> Self {
        self.mailer = mailer;
        self
    }
}
