//! An operator's answer to a set-up request (a buyer who asked for a hand-held set-up, or who
//! signed in as neither the purchaser nor the beneficiary where the vendor lets operators
//! decide). Approving gives a one-time link, valid for 7 days and stored only as its hash,
//! that the operator passes to the requester: it brings the purchase the marketplace resolved
//! into their browser, and they sign up or sign in as after any landing. Declining closes the
//! request with a reason.

use marketlink_core::ResolvedPurchase;
use marketlink_store::{OnboardingDecision, OnboardingRequest, StoreError};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::{Actor, Engine};

/// How long an approval link stays valid.
pub const APPROVAL_LIFETIME: Duration = Duration::days(7);

#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    /// Decided already (perhaps by another operator), or no such request.
    #[error("this set-up request is no longer open")]
    NotOpen,
    #[error("say why the request is declined")]
    NoReason,
    #[error(transparent)]
    Store(StoreError),
}

/// Why an approval link does not bring a purchase.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalLinkError {
    /// Unknown, expired, or the request was not approved.
    #[error("this set-up link is not valid (it may have expired)")]
    Invalid,
    /// Someone has set the subscription up already.
    #[error("this subscription is already set up")]
    AlreadySetUp,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Engine {
    /// Approves open request `id`; the caller made the link's token and passes its hash.
    /// Returns when the link expires.
    pub async fn approve_onboarding(
        &self,
        actor: &Actor,
        id: Uuid,
        link_hash: &str,
    ) -> Result<OffsetDateTime, DecisionError> {
        let expires_at = self.clock.now() + APPROVAL_LIFETIME;
        let decision = OnboardingDecision::Approved {
            link_hash: link_hash.to_owned(),
            expires_at,
        };
        self.decide(actor, id, &decision).await?;
        Ok(expires_at)
    }

    /// Declines open request `id` for `reason` (kept for the operators).
    pub async fn decline_onboarding(
        &self,
        actor: &Actor,
        id: Uuid,
        reason: &str,
    ) -> Result<(), DecisionError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(DecisionError::NoReason);
        }
        let decision = OnboardingDecision::Declined {
            reason: reason.chars().take(500).collect(),
        };
        self.decide(actor, id, &decision).await
    }

    async fn decide(
        &self,
        actor: &Actor,
        id: Uuid,
        decision: &OnboardingDecision,
    ) -> Result<(), DecisionError> {
        let now = self.clock.now();
        match self
            .store
            .decide_onboarding_request(id, decision, &actor.to_string(), now)
            .await
        {
            Ok(()) => {}
            Err(StoreError::NotFound(_)) => return Err(DecisionError::NotOpen),
            Err(error) => return Err(DecisionError::Store(error)),
        }
        let (action, detail) = match decision {
            OnboardingDecision::Approved { expires_at, .. } => (
                "onboarding.approve",
                serde_json::json!({ "link_expires_at": expires_at.unix_timestamp() }),
            ),
            OnboardingDecision::Declined { reason } => (
                "onboarding.decline",
                serde_json::json!({ "reason": reason }),
            ),
        };
        self.audit(actor, action, Some(&id.to_string()), detail)
            .await;
        tracing::info!(request = %id, %actor, action, "set-up request decided");
        Ok(())
    }

    /// The purchase an approval link (its token's hash) brings, with the request's email for
    /// the sign-up form, while the link is valid and nobody has set the subscription up.
    pub async fn approved_purchase(
        &self,
        link_hash: &str,
    ) -> Result<(OnboardingRequest, ResolvedPurchase), ApprovalLinkError> {
        let request = self
            .store
            .approved_onboarding_request(link_hash, self.clock.now())
            .await?
            .ok_or(ApprovalLinkError::Invalid)?;
        if self.returning_purchase(&request.purchase).await?.is_some() {
            return Err(ApprovalLinkError::AlreadySetUp);
        }
        let mut purchase = request.purchase.clone();
        if purchase.buyer_email.is_none() && !request.email.is_empty() {
            purchase.buyer_email = Some(request.email.clone());
        }
        Ok((request, purchase))
    }
}
