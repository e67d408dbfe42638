//! GetEntitlements: a subscription's contract quantities (every page), filtered by
//! CustomerIdentifier (classic listings) or LicenseArn / account (concurrent agreements).

use aws_sdk_marketplaceentitlement::types::GetEntitlementFilterName;
use marketlink_core::{Entitlement, EntitlementValue, ExternalRef, ProviderError};

use crate::{AwsProvider, agreement::to_time, config::IdentityMode, errors::AwsFailure};

impl AwsProvider {
    pub(crate) async fn get_entitlements(
        &self,
        subscription: &ExternalRef,
    ) -> Result<Vec<Entitlement>, ProviderError> {
        let product = self.config.require_product(&subscription.product_code)?;
        let (name, value) = match (product.identity_mode, &subscription.license_arn) {
            (IdentityMode::Classic, _) => (
                GetEntitlementFilterName::CustomerIdentifier,
                subscription.customer_id.clone(),
            ),
            (IdentityMode::Concurrent, Some(arn)) => {
                (GetEntitlementFilterName::LicenseArn, arn.clone())
            }
            (IdentityMode::Concurrent, None) => (
                GetEntitlementFilterName::CustomerAwsAccountId,
                subscription
                    .customer_account_id
                    .clone()
                    .unwrap_or_else(|| subscription.customer_id.clone()),
            ),
        };
        let raw = self
            .raw_entitlements(&subscription.product_code, name, value)
            .await?;
        Ok(raw
            .iter()
            .filter_map(|e| {
                let dimension = e.dimension()?.to_owned();
                let v = e.value()?;
                let value = if let Some(i) = v.integer_value() {
                    EntitlementValue::Integer(i64::from(i))
                } else if let Some(d) = v.double_value() {
                    EntitlementValue::Double(d)
                } else if let Some(b) = v.boolean_value() {
                    EntitlementValue::Boolean(b)
                } else if let Some(s) = v.string_value() {
                    EntitlementValue::String(s.to_owned())
                } else {
                    tracing::warn!(dimension, "entitlement without a value ignored");
                    return None;
                };
                Some(Entitlement {
                    dimension,
                    value,
                    expires_at: e.expiration_date().and_then(to_time),
                })
            })
            .collect())
    }

    /// Every page of GetEntitlements for one filter.
    pub(crate) async fn raw_entitlements(
        &self,
        product_code: &str,
        name: GetEntitlementFilterName,
        value: String,
    ) -> Result<Vec<aws_sdk_marketplaceentitlement::types::Entitlement>, ProviderError> {
        let mut all = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .retry
                .run("GetEntitlements", || async {
                    self.entitlement
                        .get_entitlements()
                        .product_code(product_code)
                        .filter(name.clone(), vec![value.clone()])
                        .max_results(25)
                        .set_next_token(next.clone())
                        .send()
                        .await
                        .map_err(AwsFailure::from_sdk)
                })
                .await
                .map_err(|f| f.into_provider_error("GetEntitlements"))?;
            all.extend(page.entitlements().iter().cloned());
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(all)
    }
}
