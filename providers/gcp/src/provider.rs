//! The trait impl: each method hands over to its module; lifecycle calls live here.

use async_trait::async_trait;
use marketlink_core::{
    AuthenticatedMessage, Capabilities, ChangeAnswer, ChangeOutcome, ChangeProgress, Diagnosis,
    Entitlement, ExternalRef, InboundEndpoint, InboundMessage, LandingToken, Marketplace,
    MarketplaceEvent, MarketplaceProvider, MarketplaceRules, MarketplaceView, PlanId,
    ProviderError, PulledMessage, ResolvedPurchase, SubscriptionDirectory, UsageOutcome,
    UsageRecord, UsageRules,
};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::{GcpProvider, INBOUND_ENDPOINTS, model};

/// Records per `report_usage` call: one `services.report` carries them all.
pub const MAX_BATCH: usize = 25;

fn gcp_rules() -> MarketplaceRules {
    MarketplaceRules {
        display_name: "Google Cloud Marketplace".into(),
        return_step: "Return to the product's page in the Google Cloud console and choose \
                      \"Sign up with provider\" (or \"Manage on provider\") again."
            .into(),
        // Google POSTs the token as a form field (S1, S2).
        landing_post_only: true,
        usage: UsageRules {
            max_batch: MAX_BATCH,
            zero_hours: false,
            allocations: false,
            // metricValues are int64Value in the codelab and S4's example.
            whole_units: true,
            // "Report usage within one hour" of it (S19): an hour's usage ends at its end, so
            // the deadline is one hour after that, two after its start.
            window: Duration::hours(2),
            month_close: None,
            max_hourly_quantity: Some(i64::MAX as u64),
        },
    }
}

impl GcpProvider {
    fn unsupported(&self, operation: &'static str) -> ProviderError {
        ProviderError::Unsupported {
            marketplace: self.marketplace.clone(),
            operation,
        }
    }

    /// The sign-up token, verified, and the entitlement it is for: among the account's
    /// entitlements, those of `google.orders` when named, the one awaiting approval first.
    async fn resolve_sign_up(
        &self,
        token: &LandingToken,
    ) -> Result<ResolvedPurchase, ProviderError> {
        let sign_up = self.verify_sign_up(&token.token).await?;
        let procurement = self.procurement();
        match procurement.account(&sign_up.account_id).await {
            Err(ProviderError::NotFound(_)) => {
                return Err(ProviderError::InvalidToken(
                    "Google knows no such account".into(),
                ));
            }
            other => other?,
        };
        let filter = format!("account=\"{}\"", sign_up.account_id.replace('"', ""));
        let mut candidates: Vec<model::Entitlement> = procurement
            .entitlements(Some(&filter))
            .await?
            .into_iter()
            .filter(|e| e.account_id() == sign_up.account_id)
            .filter(|e| sign_up.orders.is_empty() || sign_up.orders.contains(&e.order_id))
            .filter(|e| e.state != "ENTITLEMENT_CANCELLED")
            .collect();
        candidates.sort_by_key(|e| {
            (
                e.state != "ENTITLEMENT_ACTIVATION_REQUESTED",
                std::cmp::Reverse(e.create_time),
            )
        });
        let Some(entitlement) = candidates.into_iter().next() else {
            return Err(ProviderError::retryable(
                "Google has no entitlement for this account yet",
            ));
        };
        Ok(ResolvedPurchase {
            subscription: entitlement.external_ref(&self.marketplace),
            plan_id: entitlement.plan_id(),
            quantity: None,
            free_trial: false,
            term: entitlement.term(),
            display_name: None,
            buyer_email: None,
            aliases: entitlement.aliases(),
            parties: Vec::new(),
        })
    }

    /// `accounts:approve` (approval `signup`), then `entitlements:approve` (codelab steps 2-3;
    /// an entitlement cannot be approved before its account, S11). Safe to repeat.
    async fn approve(&self, subscription: &ExternalRef) -> Result<(), ProviderError> {
        let procurement = self.procurement();
        procurement
            .approve_account(&subscription.customer_id)
            .await?;
        let entitlement = procurement.entitlement(&subscription.external_id).await?;
        match entitlement.state.as_str() {
            "ENTITLEMENT_ACTIVATION_REQUESTED" => {}
            "ENTITLEMENT_CANCELLED" => {
                return Err(ProviderError::Rejected {
                    code: "ENTITLEMENT_CANCELLED".into(),
                    message: "the buyer cancelled before activation".into(),
                });
            }
            _ => return Ok(()),
        }
        match procurement
            .entitlement_action(entitlement.id(), "approve", &json!({}))
            .await
        {
            Err(ProviderError::Rejected { .. })
                if procurement.entitlement(entitlement.id()).await?.state
                    != "ENTITLEMENT_ACTIVATION_REQUESTED" =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// Approves or rejects the pending plan `operation_id` (S8 approvePlanChange /
    /// rejectPlanChange, both keyed by `pendingPlanName`).
    async fn answer_plan_change(
        &self,
        subscription: &ExternalRef,
        pending_plan: &str,
        accept: bool,
    ) -> Result<ChangeAnswer, ProviderError> {
        let procurement = self.procurement();
        let entitlement = procurement.entitlement(&subscription.external_id).await?;
        if entitlement.state != "ENTITLEMENT_PENDING_PLAN_CHANGE_APPROVAL"
            || entitlement.new_pending_plan != pending_plan
        {
            return Ok(ChangeAnswer::SettledWithout {
                reason: format!(
                    "entitlement is {} (pending plan {:?})",
                    entitlement.state, entitlement.new_pending_plan
                ),
            });
        }
        let (verb, body) = if accept {
            (
                "approvePlanChange",
                json!({"pendingPlanName": pending_plan}),
            )
        } else {
            (
                "rejectPlanChange",
                json!({"pendingPlanName": pending_plan, "reason": "refused by the vendor's plan-change policy"}),
            )
        };
        procurement
            .entitlement_action(entitlement.id(), verb, &body)
            .await?;
        Ok(ChangeAnswer::Taken)
    }

    fn view_of(&self, entitlement: &model::Entitlement) -> MarketplaceView {
        let mut view = MarketplaceView::of(entitlement.external_ref(&self.marketplace));
        view.status = entitlement.status();
        view.plan_id = entitlement.plan_id();
        view
    }
}

#[async_trait]
impl MarketplaceProvider for GcpProvider {
    fn marketplace(&self) -> Marketplace {
        self.marketplace.clone()
    }

    fn capabilities(&self) -> Capabilities {
        // Google has no vendor-side cancel or plan change: the buyer acts in the console (S8).
        Capabilities {
            vendor_activates: true,
            vendor_changes_plan: false,
            vendor_cancels: false,
        }
    }

    fn rules(&self) -> MarketplaceRules {
        gcp_rules()
    }

    fn landing_token(&self, fields: &[(String, String)]) -> Option<LandingToken> {
        fields
            .iter()
            .find(|(name, value)| name == "x-gcp-marketplace-token" && !value.trim().is_empty())
            .map(|(_, value)| LandingToken {
                token: value.trim().to_owned(),
            })
    }

    async fn resolve(&self, token: &LandingToken) -> Result<ResolvedPurchase, ProviderError> {
        self.resolve_sign_up(token).await
    }

    async fn activate(
        &self,
        subscription: &ExternalRef,
        _plan: Option<&PlanId>,
        _quantity: Option<u32>,
    ) -> Result<(), ProviderError> {
        self.approve(subscription).await
    }

    async fn change_plan(
        &self,
        _s: &ExternalRef,
        _p: &PlanId,
    ) -> Result<ChangeOutcome, ProviderError> {
        Err(self.unsupported(
            "plan changes from the vendor (buyers change plans in the Google Cloud console)",
        ))
    }

    async fn change_quantity(
        &self,
        _s: &ExternalRef,
        _q: u32,
    ) -> Result<ChangeOutcome, ProviderError> {
        Err(self.unsupported("quantity changes (Google entitlements have no quantity)"))
    }

    async fn cancel(&self, _s: &ExternalRef) -> Result<ChangeOutcome, ProviderError> {
        Err(self.unsupported(
            "cancellation from the vendor (buyers cancel in the Google Cloud console)",
        ))
    }

    async fn follow_change(
        &self,
        subscription: &ExternalRef,
        operation_id: &str,
    ) -> Result<ChangeProgress, ProviderError> {
        let entitlement = self
            .procurement()
            .entitlement(&subscription.external_id)
            .await?;
        if entitlement.state == "ENTITLEMENT_PENDING_PLAN_CHANGE_APPROVAL" {
            return Ok(ChangeProgress::Running {
                poll_after: std::time::Duration::from_secs(30),
            });
        }
        // Approved: the plan is the new one, or pending until the cycle ends (PENDING_PLAN_CHANGE).
        let succeeded =
            entitlement.plan == operation_id || entitlement.new_pending_plan == operation_id;
        Ok(ChangeProgress::Ended {
            succeeded,
            status: entitlement.state.clone(),
            view: Box::new(self.view_of(&entitlement)),
        })
    }

    async fn report_usage(
        &self,
        records: &[UsageRecord],
    ) -> Result<Vec<UsageOutcome>, ProviderError> {
        self.report(records).await
    }

    /// Google states no contract dimensions: an entitlement has a plan and no quantity (S8).
    async fn entitlements(
        &self,
        _subscription: &ExternalRef,
    ) -> Result<Vec<Entitlement>, ProviderError> {
        Ok(Vec::new())
    }

    async fn authenticate(
        &self,
        message: &InboundMessage,
    ) -> Result<AuthenticatedMessage, ProviderError> {
        self.authenticate_message(message).await
    }

    async fn respond_to_change(
        &self,
        subscription: &ExternalRef,
        operation_id: &str,
        accept: bool,
        answer_by: Option<OffsetDateTime>,
    ) -> Result<ChangeAnswer, ProviderError> {
        if answer_by.is_some_and(|by| self.clock.now() > by) {
            return Ok(ChangeAnswer::SettledWithout {
                reason: "answered too late".into(),
            });
        }
        self.answer_plan_change(subscription, operation_id, accept)
            .await
    }

    fn inbound_endpoints(&self) -> &'static [InboundEndpoint] {
        INBOUND_ENDPOINTS
    }

    async fn pull(&self, max: u32) -> Result<Vec<PulledMessage>, ProviderError> {
        self.pull_messages(max).await
    }

    async fn ack(&self, receipt: &str) -> Result<(), ProviderError> {
        self.ack_message(receipt).await
    }

    async fn diagnose(&self) -> Vec<Diagnosis> {
        self.diagnose_all().await
    }

    /// Every entitlement Google lists for the provider.
    async fn survey(&self, _known: &[ExternalRef]) -> Result<Vec<MarketplaceView>, ProviderError> {
        let all = self.procurement().entitlements(None).await?;
        Ok(all.iter().map(|e| self.view_of(e)).collect())
    }

    async fn interpret(
        &self,
        message: &AuthenticatedMessage,
        _directory: &dyn SubscriptionDirectory,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        self.interpret_message(message).await
    }
}
