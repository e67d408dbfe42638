//! The one trait every marketplace adapter implements.
//!
//! A provider translates between a marketplace's wire format and the core vocabulary. It
//! authenticates what the marketplace sends us and calls the marketplace's APIs; it never
//! touches the database and renders no HTML. The web front end and the workers hold providers
//! as `Arc<dyn MarketplaceProvider>`, keyed by [`Marketplace`].

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{
    Alias, Diagnosis, Entitlement, ExternalRef, Marketplace, MarketplaceEvent, MarketplaceRules,
    MarketplaceView, PlanId, SubscriptionDirectory, Term, UsageOutcome, UsageRecord,
};

/// The opaque token a buyer's browser brings to the landing page.
#[derive(Clone, PartialEq, Eq)]
pub struct LandingToken {
    pub token: String,
}

impl std::fmt::Debug for LandingToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are bearer secrets: never in logs.
        f.debug_struct("LandingToken")
            .field("token", &"<redacted>")
            .finish()
    }
}

/// What a landing token resolves to: who bought what, not yet confirmed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedPurchase {
    pub subscription: ExternalRef,
    pub plan_id: Option<PlanId>,
    pub quantity: Option<u32>,
    pub free_trial: bool,
    pub term: Option<Term>,
    /// Display name the marketplace gave the subscription (Azure `name`).
    pub display_name: Option<String>,
    /// The buyer's email if the marketplace shares it (Azure beneficiary `emailId`).
    pub buyer_email: Option<String>,
    /// Other names of this subscription the marketplace's notifications may use (AWS agreement
    /// id, licence); the engine keeps them with the subscription.
    #[serde(default)]
    pub aliases: Vec<Alias>,
    /// Who bought the subscription and who uses it (Azure `purchaser` and `beneficiary`); a
    /// buyer who signs in on the landing page must be one of them. Empty where the marketplace
    /// names none (AWS), and then no sign-in is checked against it.
    #[serde(default)]
    pub parties: Vec<PurchaseParty>,
}

/// One identity the marketplace reports for a purchase.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseParty {
    /// `purchaser` or `beneficiary`.
    pub role: String,
    pub tenant_id: Option<String>,
    pub object_id: Option<String>,
    pub email: Option<String>,
}

impl PurchaseParty {
    /// Whether a signed-in identity is this party: the same object id in the same directory;
    /// where the marketplace gave no object id, the same email (case-insensitive).
    pub fn is(&self, identity: &BuyerIdentity) -> bool {
        let same = |a: &Option<String>, b: &Option<String>| match (a, b) {
            (Some(a), Some(b)) => !a.is_empty() && a.eq_ignore_ascii_case(b),
            _ => false,
        };
        match &self.object_id {
            Some(oid) if !oid.is_empty() => {
                oid.eq_ignore_ascii_case(&identity.subject)
                    && same(&self.tenant_id, &identity.tenant_id)
            }
            _ => same(&self.email, &identity.email),
        }
    }
}

impl ResolvedPurchase {
    /// Whether `identity` may set this purchase up: no parties are known, or it is one of them.
    pub fn admits(&self, identity: &BuyerIdentity) -> bool {
        self.parties.is_empty() || self.parties.iter().any(|p| p.is(identity))
    }
}

/// The result of asking the marketplace to change a plan or quantity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ChangeOutcome {
    /// Applied.
    Done,
    /// Accepted and running; poll this operation (Azure Operation-Location).
    InProgress { operation_id: String },
}

/// Where a change we started stands at the marketplace ([`MarketplaceProvider::follow_change`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeProgress {
    /// Not ended yet; ask again after `poll_after`.
    Running { poll_after: Duration },
    /// Ended (`succeeded` false: Failed or Conflict); `view` is the subscription read back
    /// afterwards, which is what to apply, whatever the operation says.
    Ended {
        succeeded: bool,
        status: String,
        view: Box<MarketplaceView>,
    },
}

/// How the marketplace took our answer to a change it asked us about
/// ([`MarketplaceProvider::respond_to_change`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeAnswer {
    /// Our answer was taken.
    Taken,
    /// Not answered: the marketplace settled the operation otherwise before our answer, or
    /// the window to answer had closed (Microsoft auto-accepts after 10 s and sends no second
    /// notification). What it settled on must be read back ([`MarketplaceProvider::follow_change`]).
    SettledWithout { reason: String },
}

/// A plan a subscription may move to (Microsoft `listAvailablePlans`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvailablePlan {
    pub plan_id: PlanId,
    pub display_name: Option<String>,
    /// Seats are counted for this plan (quantity changes apply).
    pub per_seat: bool,
}

/// A message as it reached us (HTTP request or queue message), before authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// Which entry point received it, e.g. `sns-http`, `sqs`, `eventbridge`, `webhook`.
    pub channel: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl InboundMessage {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A message whose origin has been verified, ready to be stored in the inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthenticatedMessage {
    pub marketplace: Marketplace,
    /// Unique per message at its marketplace (SNS MessageId, EventBridge id, Azure operation id):
    /// the inbox refuses a second copy.
    pub dedup_key: String,
    /// A short name of what it says (`subscribe-success`, `ChangePlan`), for people.
    pub kind: String,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// The verified payload, kept as JSON so it can be re-interpreted after a fix.
    pub payload: serde_json::Value,
}

/// An HTTP endpoint a provider receives notifications on, mounted by the web front end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundEndpoint {
    /// Path under the public URL, e.g. `/aws/sns`.
    pub path: &'static str,
    /// The channel name handed to [`MarketplaceProvider::authenticate`], e.g. `sns-http`.
    pub channel: &'static str,
}

/// A message taken from a queue the provider polls (SQS). It stays on the queue, invisible,
/// until [`MarketplaceProvider::ack`] deletes it after the message is safely stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledMessage {
    pub message: InboundMessage,
    /// Opaque handle for [`MarketplaceProvider::ack`] (SQS receipt handle).
    pub receipt: String,
}

/// The buyer as an identity provider vouched for them during sign-in on the landing page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuyerIdentity {
    /// Stable subject (Entra `oid`).
    pub subject: String,
    /// The buyer's directory (Entra `tid`).
    pub tenant_id: Option<String>,
    /// Contact email if the identity provider has one (Graph `mail`, else `userPrincipalName`).
    pub email: Option<String>,
    pub name: Option<String>,
}

/// A sign-in under way: where to send the browser, and the secrets the caller keeps (server
/// side) until the identity provider sends the buyer back.
#[derive(Clone, PartialEq, Eq)]
pub struct SignInStart {
    pub authorize_url: String,
    /// Echoed on the callback (anti-CSRF).
    pub state: String,
    /// Bound into the ID token.
    pub nonce: String,
    /// The PKCE verifier whose challenge is on `authorize_url`.
    pub pkce_verifier: String,
}

impl std::fmt::Debug for SignInStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInStart")
            .field("authorize_url", &self.authorize_url)
            .finish_non_exhaustive()
    }
}

/// A sign-in the buyer must complete before the landing token is resolved (Microsoft requires
/// Entra ID single sign-on on the landing page).
#[async_trait]
pub trait BuyerSignIn: Send + Sync {
    /// A new sign-in: the provider makes `state`, `nonce` and the PKCE pair (one PKCE
    /// implementation, the provider's).
    fn begin(&self) -> SignInStart;

    /// Redeems the authorization code and validates the ID token (signature, audience,
    /// issuer, expiry, `nonce`). An account the vendor does not admit (personal accounts where
    /// only work or school accounts may sign in) is `ProviderError::Rejected`.
    async fn complete(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<BuyerIdentity, ProviderError>;

    /// What happens when the signed-in buyer is neither the purchaser nor the beneficiary
    /// (required, so that wrappers cannot silently drop the vendor's choice).
    fn on_mismatch(&self) -> SignInMismatch;
}

/// The vendor's choice for a sign-in that does not match the purchase (`[azure.sign_in]
/// on_mismatch`): a leaked landing link alone must not let a stranger claim a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInMismatch {
    /// Refuse, naming who may set the subscription up.
    #[default]
    Refuse,
    /// Record an onboarding request the vendor's operators approve or decline.
    OperatorApproval,
}

/// What a provider can do; the front end hides what a marketplace does not offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Capabilities {
    /// We must call activate after sign-up (Azure); AWS activates by notification.
    pub vendor_activates: bool,
    /// Plan and quantity changes can start from our side (Azure).
    pub vendor_changes_plan: bool,
    /// We can cancel from our side (Azure DELETE).
    pub vendor_cancels: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The landing token is malformed or unknown.
    #[error("the marketplace token is not valid: {0}")]
    InvalidToken(String),
    /// The landing token was valid once but has expired or was already used.
    #[error("the marketplace token has expired: {0}")]
    ExpiredToken(String),
    /// An inbound message failed authentication (signature, issuer, audience, freshness).
    #[error("message not authenticated: {0}")]
    Unauthenticated(String),
    /// The input is well-formed but the marketplace refuses it for good.
    #[error("the marketplace refused the request ({code}): {message}")]
    Rejected { code: String, message: String },
    /// The subscription or operation does not exist at the marketplace.
    #[error("not found at the marketplace: {0}")]
    NotFound(String),
    /// This marketplace does not support the operation.
    #[error("{marketplace} does not support {operation}")]
    Unsupported {
        marketplace: Marketplace,
        operation: &'static str,
    },
    /// Throttling, 5xx, timeouts, connection failures: try again later.
    #[error("temporary marketplace failure: {message}")]
    Retryable {
        message: String,
        /// What the marketplace asked for (Retry-After), if anything.
        retry_after: Option<Duration>,
    },
    /// Our configuration is wrong (credentials, product codes): an operator must act.
    #[error("marketplace configuration problem: {0}")]
    Configuration(String),
}

impl ProviderError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. })
    }

    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// A marketplace adapter. Object safe: held as `Arc<dyn MarketplaceProvider>`.
#[async_trait]
pub trait MarketplaceProvider: Send + Sync + 'static {
    fn marketplace(&self) -> Marketplace;

    fn capabilities(&self) -> Capabilities;

    /// What differs on this marketplace (labels shown to buyers, how usage is taken). The
    /// default is conservative; a provider declares its marketplace's own.
    fn rules(&self) -> MarketplaceRules {
        MarketplaceRules::generic(self.marketplace().to_string())
    }

    /// Exchanges a landing-page token for the purchase it stands for. Call at once: tokens
    /// are short-lived.
    async fn resolve(&self, token: &LandingToken) -> Result<ResolvedPurchase, ProviderError>;

    /// Tells the marketplace we have set the buyer up and billing may start (Azure activate).
    /// A marketplace that activates by notification returns `Ok(())` without a call.
    async fn activate(
        &self,
        subscription: &ExternalRef,
        plan: Option<&PlanId>,
        quantity: Option<u32>,
    ) -> Result<(), ProviderError>;

    async fn change_plan(
        &self,
        subscription: &ExternalRef,
        plan: &PlanId,
    ) -> Result<ChangeOutcome, ProviderError>;

    async fn change_quantity(
        &self,
        subscription: &ExternalRef,
        quantity: u32,
    ) -> Result<ChangeOutcome, ProviderError>;

    /// Plans this subscription may move to, as the marketplace sees it.
    async fn available_plans(
        &self,
        subscription: &ExternalRef,
    ) -> Result<Vec<AvailablePlan>, ProviderError> {
        let _ = subscription;
        Err(ProviderError::Unsupported {
            marketplace: self.marketplace(),
            operation: "listing available plans",
        })
    }

    /// Cancels from our side.
    async fn cancel(&self, subscription: &ExternalRef) -> Result<ChangeOutcome, ProviderError>;

    /// Follows a change that answered [`ChangeOutcome::InProgress`]: one look at the operation,
    /// and once it has ended, the subscription as the marketplace now has it.
    async fn follow_change(
        &self,
        subscription: &ExternalRef,
        operation_id: &str,
    ) -> Result<ChangeProgress, ProviderError> {
        let _ = (subscription, operation_id);
        Err(ProviderError::Unsupported {
            marketplace: self.marketplace(),
            operation: "following a change",
        })
    }

    /// Sends hourly usage records; one outcome per record, in the same order. Batching limits
    /// (25 per call on both marketplaces) are the provider's to respect. An `Err` means nothing
    /// in the batch is known to have been processed.
    async fn report_usage(
        &self,
        records: &[UsageRecord],
    ) -> Result<Vec<UsageOutcome>, ProviderError>;

    /// Reads the current entitlements from the marketplace.
    async fn entitlements(
        &self,
        subscription: &ExternalRef,
    ) -> Result<Vec<Entitlement>, ProviderError>;

    /// Verifies an inbound message (signature, issuer, freshness) and extracts its unique key.
    /// Cheap enough to run before answering the marketplace; does not act on it.
    async fn authenticate(
        &self,
        message: &InboundMessage,
    ) -> Result<AuthenticatedMessage, ProviderError>;

    /// Accepts or refuses a change the marketplace asked us about ([`EventKind::ChangeRequested`]),
    /// if `answer_by` (the marketplace's deadline, when it has one) has not passed: a late
    /// answer is not sent, and [`ChangeAnswer::SettledWithout`] says so.
    ///
    /// [`EventKind::ChangeRequested`]: crate::EventKind::ChangeRequested
    async fn respond_to_change(
        &self,
        subscription: &ExternalRef,
        operation_id: &str,
        accept: bool,
        answer_by: Option<OffsetDateTime>,
    ) -> Result<ChangeAnswer, ProviderError> {
        let _ = (subscription, operation_id, accept, answer_by);
        Err(ProviderError::Unsupported {
            marketplace: self.marketplace(),
            operation: "responding to change requests",
        })
    }

    /// Finds the landing token among the landing request's query and form fields. The
    /// default reads `token` (Microsoft's `?token=`).
    fn landing_token(&self, fields: &[(String, String)]) -> Option<LandingToken> {
        fields
            .iter()
            .find(|(name, value)| name == "token" && !value.trim().is_empty())
            .map(|(_, value)| LandingToken {
                token: value.trim().to_owned(),
            })
    }

    /// The sign-in the buyer must complete on the landing page before `resolve`, if any.
    fn buyer_sign_in(&self) -> Option<Arc<dyn BuyerSignIn>> {
        None
    }

    /// HTTP endpoints to mount for this marketplace's notifications.
    fn inbound_endpoints(&self) -> &'static [InboundEndpoint] {
        &[]
    }

    /// Takes up to `max` messages from queues this provider polls (none by default).
    async fn pull(&self, max: u32) -> Result<Vec<PulledMessage>, ProviderError> {
        let _ = max;
        Ok(Vec::new())
    }

    /// Removes a pulled message from its queue once it is safely stored.
    async fn ack(&self, receipt: &str) -> Result<(), ProviderError> {
        let _ = receipt;
        Ok(())
    }

    /// Checks this provider's configuration against the marketplace with harmless calls
    /// (credentials, product codes, queues, tokens) for `marketlink doctor`. Never fails:
    /// every problem is a [`Diagnosis`] saying in plain words what is wrong and what to do.
    async fn diagnose(&self) -> Vec<Diagnosis> {
        Vec::new()
    }

    /// The marketplace's own view of subscriptions, for reconciliation: every subscription it
    /// lists (Azure), or what it says about each of `known` (AWS reads entitlements per
    /// customer). Read-only.
    async fn survey(&self, known: &[ExternalRef]) -> Result<Vec<MarketplaceView>, ProviderError> {
        let _ = known;
        Err(ProviderError::Unsupported {
            marketplace: self.marketplace(),
            operation: "surveying subscriptions",
        })
    }

    /// Turns a stored, authenticated message into domain events, confirming with the
    /// marketplace's source of truth where needed (GetEntitlements, Get Operation). Run by the
    /// inbox worker; must be safe to repeat. `directory` finds the subscriptions we already
    /// know by the other names they go by ([`SubscriptionDirectory`]).
    async fn interpret(
        &self,
        message: &AuthenticatedMessage,
        directory: &dyn SubscriptionDirectory,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_print() {
        let token = LandingToken {
            token: "secret-token".into(),
        };
        assert!(!format!("{token:?}").contains("secret-token"));
    }

    #[test]
    fn retryable_classification() {
        assert!(ProviderError::retryable("throttled").is_retryable());
        assert!(!ProviderError::InvalidToken("x".into()).is_retryable());
    }

    #[test]
    fn trait_is_object_safe() {
        fn takes(_: Option<std::sync::Arc<dyn MarketplaceProvider>>) {}
        takes(None);
    }

    fn identity(oid: &str, tid: &str, email: Option<&str>) -> BuyerIdentity {
        BuyerIdentity {
            subject: oid.into(),
            tenant_id: Some(tid.into()),
            email: email.map(str::to_owned),
            name: None,
        }
    }

    #[test]
    fn a_party_is_its_object_in_its_directory_or_its_email() {
        let alice = PurchaseParty {
            role: "purchaser".into(),
            tenant_id: Some("T1".into()),
            object_id: Some("OID-A".into()),
            email: Some("alice@example.com".into()),
        };
        assert!(alice.is(&identity("oid-a", "t1", None)));
        // The same object id in another directory is someone else.
        assert!(!alice.is(&identity("oid-a", "t2", None)));
        // With an object id known, a matching email alone does not do.
        assert!(!alice.is(&identity("oid-c", "t1", Some("alice@example.com"))));
        let by_email = PurchaseParty {
            object_id: None,
            ..alice
        };
        assert!(by_email.is(&identity("x", "t9", Some("ALICE@example.com"))));
        assert!(!by_email.is(&identity("x", "t9", None)));
    }

    #[test]
    fn a_purchase_admits_its_parties_only() {
        let mut purchase = ResolvedPurchase {
            subscription: ExternalRef {
                marketplace: crate::Marketplace::AZURE,
                external_id: "s".into(),
                product_code: "p".into(),
                customer_id: "t1".into(),
                customer_account_id: None,
                license_arn: None,
            },
            plan_id: None,
            quantity: None,
            free_trial: false,
            term: None,
            display_name: None,
            buyer_email: None,
            aliases: Vec::new(),
            parties: Vec::new(),
        };
        let carol = identity("oid-c", "t2", None);
        assert!(
            purchase.admits(&carol),
            "no parties known: nothing to check"
        );
        purchase.parties.push(PurchaseParty {
            role: "beneficiary".into(),
            tenant_id: Some("t1".into()),
            object_id: Some("oid-b".into()),
            email: None,
        });
        assert!(!purchase.admits(&carol));
        assert!(purchase.admits(&identity("oid-b", "t1", None)));
    }
}
