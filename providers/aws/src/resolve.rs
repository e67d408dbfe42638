//! ResolveCustomer: the landing page's `x-amzn-marketplace-token` exchanged for the buyer's
//! subscription, with the free trial and term read from the Agreement API for EventBridge
//! listings. The free-trial mark comes from AWS only: the form's
//! `x-amzn-marketplace-offer-type` is the buyer's browser speaking, and anyone can post it.
//! SNS listings learn of a trial from `subscribe-success` (`isFreeTrialTermPresent`).

use marketlink_core::{LandingToken, ProviderError, ResolvedPurchase};

use crate::{
    AwsProvider,
    config::{IdentityMode, NotificationMode},
    errors::AwsFailure,
    identity::aliases_of,
    refs::{classic_ref, concurrent_ref},
};

/// AWS POSTs the form field `x-amzn-marketplace-token` (seed 000).
pub(crate) fn landing_token(fields: &[(String, String)]) -> Option<LandingToken> {
    fields
        .iter()
        .find(|(k, v)| k == "x-amzn-marketplace-token" && !v.trim().is_empty())
        .map(|(_, v)| LandingToken {
            token: v.trim().to_owned(),
        })
}

fn incomplete(what: &str) -> ProviderError {
    ProviderError::Rejected {
        code: "IncompleteResponse".into(),
        message: format!("ResolveCustomer returned no {what}"),
    }
}

impl AwsProvider {
    pub(crate) async fn resolve_token(
        &self,
        token: &LandingToken,
    ) -> Result<ResolvedPurchase, ProviderError> {
        if token.token.trim().is_empty() {
            return Err(ProviderError::InvalidToken(
                "the x-amzn-marketplace-token is empty".into(),
            ));
        }
        let out = self
            .retry
            .run("ResolveCustomer", || async {
                self.metering
                    .resolve_customer()
                    .registration_token(&token.token)
                    .send()
                    .await
                    .map_err(AwsFailure::from_sdk)
            })
            .await
            .map_err(|f| f.into_provider_error("ResolveCustomer"))?;
        let product_code = out
            .product_code()
            .ok_or_else(|| incomplete("ProductCode"))?;
        let product = self.config.require_product(product_code)?;
        let account = out.customer_aws_account_id();
        let license_arn = out.license_arn();
        let subscription = match product.identity_mode {
            IdentityMode::Classic => {
                let ci = out
                    .customer_identifier()
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| incomplete("CustomerIdentifier for a classic listing"))?;
                classic_ref(ci, product_code, account, license_arn)
            }
            IdentityMode::Concurrent => {
                let arn = license_arn
                    .ok_or_else(|| incomplete("LicenseArn for a concurrent-agreements listing"))?;
                let account = account.ok_or_else(|| incomplete("CustomerAWSAccountId"))?;
                concurrent_ref(arn, product_code, account)
            }
        };
        let agreement_id = out.metadata().and_then(|m| m.agreement_id());
        let aliases = aliases_of(agreement_id, license_arn);
        let mut free_trial = false;
        let mut term = None;
        if product.notification_mode == NotificationMode::Eventbridge
            && let Some(agreement_id) = agreement_id
        {
            match self.agreement_facts(agreement_id).await {
                Ok(facts) => {
                    free_trial = facts.free_trial;
                    term = facts.term;
                }
                // The token is spent once resolved: do not fail the landing page for a detail.
                Err(e) => tracing::warn!(
                    agreement_id,
                    error = %e,
                    "cannot read the agreement terms; the free trial and term come with AWS's notifications"
                ),
            }
        }
        Ok(ResolvedPurchase {
            subscription,
            plan_id: None,
            quantity: None,
            free_trial,
            term,
            display_name: None,
            buyer_email: None,
            aliases,
            parties: Vec::new(),
        })
    }
}
