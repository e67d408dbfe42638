//! Which subscription an EventBridge agreement event is about.
//!
//! In order: the licence the event names, its agreement, the agreement it renews or replaces
//! (`previousAgreementId`, or DescribeAgreement's `initialAgreementId` when the renewal's
//! events arrive before its Created event), all through the directory the engine keeps, so a
//! restart loses nothing. An agreement nobody stored is a new purchase only when a License
//! Updated event names a configured product; events of the seller's other products (an
//! EventBridge rule is per account, not per product) are recognised and left alone.

use aws_sdk_marketplaceentitlement::types::GetEntitlementFilterName;
use marketlink_core::{Alias, ExternalRef, Marketplace, ProviderError, SubscriptionDirectory};

use super::{AgreementEvent, str_at};
use crate::{
    AwsProvider,
    agreement::Described,
    config::{IdentityMode, ProductConfig},
    identity::{agreement_alias, aliases_of, canonical_license_arn, license_alias, same_license},
    refs::{classic_ref, concurrent_ref},
};

/// Who an agreement event is about.
pub(super) enum Identified {
    /// A subscription already stored. `by_license` says the event's licence named it (the
    /// licence is one it has or had); otherwise its agreement or agreement chain did.
    Known {
        subscription: ExternalRef,
        by_license: bool,
        aliases: Vec<Alias>,
    },
    /// A purchase nobody stored yet (License Updated before the buyer landed).
    New {
        subscription: ExternalRef,
        aliases: Vec<Alias>,
    },
    /// Not one of ours: another product, or an agreement we never served. Why, for the log.
    NotOurs(String),
}

/// What the caller allows when the agreement is unknown.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum IfUnknown {
    /// Build the subscription (License Updated: activation may precede the landing page).
    Create,
    /// Nothing to act on: ending or amending an agreement we never stored.
    Ignore,
}

impl AwsProvider {
    pub(super) async fn identify(
        &self,
        event: &AgreementEvent<'_>,
        directory: &dyn SubscriptionDirectory,
        if_unknown: IfUnknown,
    ) -> Result<Identified, ProviderError> {
        let license = event.license_arn();
        let aliases = aliases_of(Some(event.agreement_id), license.as_deref());
        let known = |subscription, by_license| Identified::Known {
            subscription,
            by_license,
            aliases: aliases.clone(),
        };
        let find = |alias: Alias| async move { directory.find(&Marketplace::AWS, &alias).await };
        if let Some(l) = &license
            && let Some(s) = find(license_alias(l)).await?
        {
            return Ok(known(s, true));
        }
        if let Some(s) = find(agreement_alias(event.agreement_id)).await? {
            return Ok(known(s, false));
        }
        if let Some(previous) = str_at(event.detail, "/agreement/previousAgreementId")
            && let Some(s) = find(agreement_alias(previous)).await?
        {
            return Ok(known(s, false));
        }
        let described = self.described(event.agreement_id).await?;
        if let Some(initial) = described
            .as_ref()
            .and_then(|d| d.initial_agreement_id.as_deref())
            .filter(|i| *i != event.agreement_id)
            && let Some(s) = find(agreement_alias(initial)).await?
        {
            return Ok(known(s, false));
        }
        let product = match self.product_of(event, described.as_ref()) {
            Ok(product) => product,
            Err(why) => return Ok(Identified::NotOurs(why)),
        };
        if if_unknown == IfUnknown::Ignore {
            return Ok(Identified::NotOurs(format!(
                "agreement {} of {} was never stored here",
                event.agreement_id, product.product_code
            )));
        }
        let Some(license) = license else {
            return Ok(Identified::NotOurs(
                "a License event without license.arn".into(),
            ));
        };
        let Some(subscription) = self.new_subscription(event, &product, &license).await? else {
            return Ok(Identified::NotOurs(
                "an event without acceptor.accountId".into(),
            ));
        };
        // Stored without these names (before aliases existed, or a classic buyer back with a
        // new licence): the same subscription.
        if let Some(stored) = directory
            .get(&Marketplace::AWS, &subscription.external_id)
            .await?
        {
            let by_license =
                (stored.license_arn.as_deref()).is_some_and(|l| same_license(l, &license));
            return Ok(known(stored, by_license));
        }
        Ok(Identified::New {
            subscription,
            aliases: aliases.clone(),
        })
    }

    /// DescribeAgreement, or `None` when AWS will not say (a channel-partner agreement is not
    /// the manufacturer's to read: AccessDenied). Only a retryable failure is an error.
    pub(super) async fn described(
        &self,
        agreement_id: &str,
    ) -> Result<Option<Described>, ProviderError> {
        match self.describe_agreement(agreement_id).await {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.is_retryable() => Err(e),
            Err(e) => {
                tracing::info!(agreement_id, error = %e, "DescribeAgreement unavailable for this agreement");
                Ok(None)
            }
        }
    }

    /// The configured product an event is for, or why it is none of ours. License events name
    /// the product code; others are matched on DescribeAgreement's catalog product id.
    fn product_of(
        &self,
        event: &AgreementEvent<'_>,
        described: Option<&Described>,
    ) -> Result<ProductConfig, String> {
        if let Some(code) = str_at(event.detail, "/product/code") {
            return self
                .config
                .product(code)
                .cloned()
                .ok_or_else(|| format!("product {code} is not configured here"));
        }
        let product_id = str_at(event.detail, "/product/id")
            .map(str::to_owned)
            .or_else(|| described.and_then(|d| d.product_id.clone()))
            .ok_or_else(|| format!("cannot tell the product of {}", event.agreement_id))?;
        self.config
            .products
            .iter()
            .find(|p| p.product_id.as_deref() == Some(product_id.as_str()))
            .cloned()
            .ok_or_else(|| format!("product {product_id} is not configured here"))
    }

    /// The reference `resolve` would have built for this licence.
    async fn new_subscription(
        &self,
        event: &AgreementEvent<'_>,
        product: &ProductConfig,
        license: &str,
    ) -> Result<Option<ExternalRef>, ProviderError> {
        let Some(account) = str_at(event.detail, "/acceptor/accountId") else {
            return Ok(None);
        };
        Ok(Some(match product.identity_mode {
            IdentityMode::Concurrent => concurrent_ref(license, &product.product_code, account),
            IdentityMode::Classic => {
                let found = self
                    .raw_entitlements(
                        &product.product_code,
                        GetEntitlementFilterName::LicenseArn,
                        canonical_license_arn(license),
                    )
                    .await?;
                let Some(ci) = found
                    .iter()
                    .find(|e| e.license_arn().is_none_or(|l| same_license(l, license)))
                    .and_then(|e| e.customer_identifier())
                else {
                    // Only ResolveCustomer names the buyer of a subscription without
                    // entitlements: wait for the landing page rather than guess.
                    return Err(ProviderError::retryable(format!(
                        "the CustomerIdentifier of licence {license} is not known until the buyer reaches the landing page"
                    )));
                };
                classic_ref(ci, &product.product_code, Some(account), Some(license))
            }
        }))
    }
}
