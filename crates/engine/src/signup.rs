//! A buyer without an account: sign up and claim the purchase in one step, or ask the
//! vendor's team to set the account up (seed 000's manual path).
//!
//! Sign-up stores the tenant, its owner, the subscription and the binding in one transaction;
//! the vendor hears of it (`tenant.created`, `subscription.linked`) and activation is queued
//! only after that commit, so a refused claim leaves no tenant and sends no webhook. The
//! owner's typed address is unverified until shown to be theirs (`verification`). The row a
//! resolved purchase becomes is drawn up here for linking (`onboarding`) as well.

use marketlink_core::{
    BuyerIdentity, ResolvedPurchase, Role, Subscription, Tenant, User, tenant::looks_like_email,
};
use marketlink_store::{OnboardingRequest, StoreError, signup::Claim};
use time::OffsetDateTime;

use crate::Engine;

/// What the buyer typed on the sign-up form (the password is hashed by the caller).
#[derive(Debug, Clone, Copy)]
pub struct NewAccount<'a> {
    pub name: &'a str,
    /// Blank when the buyer gave none.
    pub company: &'a str,
    pub email: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum SignUpError {
    /// The form does not describe a valid account; the text says what to fix.
    #[error("{0}")]
    Invalid(String),
    /// An account with this email exists; the text says to sign in instead.
    #[error("{0}")]
    EmailTaken(String),
    /// The marketplace identity already belongs to another tenant (seed 000, step 8).
    #[error("this {0} subscription is already linked to another account")]
    AlreadyLinked(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A request for the vendor's team to set an account up by hand.
#[derive(Debug, Clone, Copy)]
pub struct ContactRequest<'a> {
    pub name: &'a str,
    pub email: &'a str,
    pub company: &'a str,
    pub message: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    #[error("a name and a valid email address are needed to reach the buyer")]
    Invalid,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn non_empty(text: &str) -> Option<String> {
    Some(text.trim())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

impl Engine {
    /// The tenant and owner a sign-up form describes, checked before the caller spends time
    /// hashing the password.
    pub fn new_account(&self, form: NewAccount<'_>) -> Result<(Tenant, User), SignUpError> {
        let now = self.clock.now();
        let company = Some(form.company).filter(|c| !c.trim().is_empty());
        let invalid =
            |e: marketlink_core::tenant::InvalidTenant| SignUpError::Invalid(e.to_string());
        let tenant = Tenant::new(form.name, company, form.email, now).map_err(invalid)?;
        let owner =
            User::new(tenant.id, form.email, Some(form.name), Role::Owner, now).map_err(invalid)?;
        Ok((tenant, owner))
    }

    /// Creates `tenant` with its `owner` and binds the purchase to it, all or nothing; then
    /// tells the vendor and queues activation.
    pub async fn sign_up_and_claim(
        &self,
        tenant: &Tenant,
        owner: &User,
        password_hash: &str,
        purchase: &ResolvedPurchase,
    ) -> Result<Subscription, SignUpError> {
        let now = self.clock.now();
        let purchase = &self.known_purchase(purchase).await?;
        let fresh = self.fresh_subscription(purchase, now);
        let marketplace = &purchase.subscription.marketplace;
        let bound = match self
            .store
            .sign_up_and_claim(tenant, owner, password_hash, &fresh, now)
            .await?
        {
            Claim::Bound(bound) => *bound,
            Claim::EmailTaken(message) => return Err(SignUpError::EmailTaken(message)),
            Claim::LinkedElsewhere => {
                return Err(SignUpError::AlreadyLinked(marketplace.to_string()));
            }
        };
        tracing::info!(tenant = %tenant.id, subscription = %bound.id, "tenant created at sign-up");
        // A typed address: unverified until the mailed link is opened or an operator confirms.
        let verification = self.verification_method();
        let mut data = crate::webhooks::tenant_data(tenant);
        data["owner"] = serde_json::json!({
            "email": owner.email,
            "name": owner.name,
            "email_verified": false,
            "verification": verification,
        });
        data["marketplace"] = serde_json::json!(marketplace);
        self.notify_vendor("tenant.created", data).await?;
        if verification == marketlink_core::VerificationMethod::Link {
            self.queue_verification_mail(owner.id).await?;
        }
        self.announce_claim(&bound, purchase, tenant.id).await?;
        Ok(bound)
    }

    /// The subscription row a resolved purchase stands for, before it is stored.
    pub(crate) fn fresh_subscription(
        &self,
        purchase: &ResolvedPurchase,
        now: OffsetDateTime,
    ) -> Subscription {
        let external = &purchase.subscription;
        let mut fresh = Subscription::pending(external.clone(), now);
        fresh.product_id = self
            .catalog
            .by_listing(&external.marketplace, &external.product_code)
            .map(|p| p.id.clone());
        fresh.plan_id = purchase.plan_id.clone();
        fresh.quantity = purchase.quantity;
        fresh.free_trial = purchase.free_trial;
        fresh.term = purchase.term.clone();
        fresh
    }

    /// Records the buyer's request to be set up by the vendor's team. The request keeps the
    /// purchase exactly as the marketplace resolved it, never as the browser stated it.
    pub async fn request_onboarding(
        &self,
        request: ContactRequest<'_>,
        purchase: &ResolvedPurchase,
    ) -> Result<OnboardingRequest, ContactError> {
        let email = request.email.trim().to_lowercase();
        if request.name.trim().is_empty() || !looks_like_email(&email) {
            return Err(ContactError::Invalid);
        }
        let stored = OnboardingRequest {
            id: uuid::Uuid::now_v7(),
            name: request.name.trim().chars().take(200).collect(),
            email,
            company: non_empty(request.company),
            message: non_empty(request.message).map(|m| m.chars().take(2000).collect()),
            purchase: purchase.clone(),
            status: "open".into(),
            created_at: self.clock.now(),
        };
        self.store.create_onboarding_request(&stored).await?;
        tracing::info!(
            request = %stored.id,
            marketplace = %purchase.subscription.marketplace,
            customer = %purchase.subscription.customer_id,
            "manual onboarding requested; the vendor's team must set up this account"
        );
        Ok(stored)
    }

    /// A buyer who signed in as neither the purchaser nor the beneficiary, where the vendor
    /// lets operators decide: the request keeps the resolved purchase and who signed in (their
    /// directory may have no email), and nothing is claimed until an operator acts on it.
    pub async fn request_sign_in_approval(
        &self,
        identity: &BuyerIdentity,
        purchase: &ResolvedPurchase,
    ) -> Result<OnboardingRequest, StoreError> {
        let who = identity
            .name
            .clone()
            .unwrap_or_else(|| identity.subject.clone());
        let stored = OnboardingRequest {
            id: uuid::Uuid::now_v7(),
            name: who.chars().take(200).collect(),
            email: identity.email.clone().unwrap_or_default().to_lowercase(),
            company: None,
            message: Some(format!(
                "Signed in as object {} in directory {}, who is neither the purchaser nor the beneficiary of this subscription; approve only if they may set it up.",
                identity.subject,
                identity.tenant_id.as_deref().unwrap_or("(none)")
            )),
            purchase: purchase.clone(),
            status: "open".into(),
            created_at: self.clock.now(),
        };
        self.store.create_onboarding_request(&stored).await?;
        tracing::info!(
            request = %stored.id,
            subject = %identity.subject,
            external_id = %purchase.subscription.external_id,
            "sign-in does not match the purchase; recorded for operator approval"
        );
        Ok(stored)
    }
}
