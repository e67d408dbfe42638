//! Where each known subscription's agreement stands, for reconciliation: SearchAgreements
//! (aws-eventbridge.md §6; marketplace-agreement model) and, for an ended agreement,
//! GetAgreementEntitlements to tell the final metering window from a revoked licence.
//!
//! **Fewest calls.** One SearchAgreements per configured product (`PartyType=Proposer`,
//! `AgreementType=PurchaseAgreement`, `ResourceIdentifier=<product id>`), pages of 50, answers
//! for every known subscription of that product at once: ⌈agreements / 50⌉ calls, where a
//! DescribeAgreement or a filtered search per subscription costs one call each (and
//! DescribeAgreement cannot be found from a licence). `AfterLastUpdateTime` would shrink the
//! pages but needs the time of a previous complete run, which a stateless provider does not
//! have and a database restored from a backup would get wrong (the very case this repairs), so
//! it is not used. A product without `product_id` falls back to one `LicenseArn`-filtered
//! search per subscription that has a licence. Only ended agreements cost one more call each
//! (GetAgreementEntitlements), and only the newest of a buyer's.

use std::collections::HashMap;

use aws_sdk_marketplaceagreement::types::{AgreementViewSummary, Filter};
use marketlink_core::{ExternalRef, ProviderError, SubscriptionStatus};

use crate::{
    AwsProvider,
    agreement::{superseded_status, to_time},
    errors::AwsFailure,
};

/// One agreement as SearchAgreements lists it: what the status decision needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Listed {
    pub agreement_id: String,
    pub status: String,
    pub acceptor: Option<String>,
    pub licenses: Vec<String>,
    /// `lastUpdateTime` (epoch seconds), to pick a buyer's newest agreement.
    pub updated: i64,
}

impl Listed {
    fn of(summary: &AgreementViewSummary) -> Option<Self> {
        Some(Self {
            agreement_id: summary.agreement_id()?.to_owned(),
            status: summary.status()?.as_str().to_owned(),
            acceptor: summary
                .acceptor()
                .and_then(|a| a.account_id())
                .map(str::to_owned),
            licenses: summary
                .entitlements()
                .iter()
                .filter_map(|e| e.license_arn())
                .map(str::to_owned)
                .collect(),
            updated: summary
                .last_update_time()
                .and_then(to_time)
                .map_or(0, |t| t.unix_timestamp()),
        })
    }

    fn ended(&self) -> bool {
        matches!(self.status.as_str(), "CANCELLED" | "EXPIRED" | "TERMINATED")
    }
}

/// What the agreements say about one subscription.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Standing {
    /// An agreement of it is ACTIVE.
    Active,
    /// Its agreement ended (CANCELLED, EXPIRED, TERMINATED, or RENEWED / REPLACED with no
    /// active successor for the buyer and product): the licence of this agreement decides
    /// between the final metering window and the end.
    Ended { agreement_id: String },
    /// Nothing to go by (no agreement found, a status we do not know): not compared.
    Unknown,
}

/// The subscription's standing among the product's agreements. Its own agreements are those
/// carrying its licence, or, without a licence (classic listings: one subscription per buyer
/// and product), those its buyer accepted.
pub(crate) fn standing(subscription: &ExternalRef, listed: &[Listed]) -> Standing {
    let buyer = subscription.customer_account_id.as_deref();
    let own: Vec<&Listed> = match &subscription.license_arn {
        Some(arn) => listed.iter().filter(|l| l.licenses.contains(arn)).collect(),
        None => listed
            .iter()
            .filter(|l| buyer.is_some() && l.acceptor.as_deref() == buyer)
            .collect(),
    };
    if own.iter().any(|l| l.status == "ACTIVE") {
        return Standing::Active;
    }
    let Some(newest) = own.iter().max_by_key(|l| (l.updated, &l.agreement_id)) else {
        return Standing::Unknown;
    };
    if superseded_status(&newest.status) {
        // A renewal or replacement: the licence may have moved to a successor we missed.
        let acceptor = newest.acceptor.as_deref();
        let successor_active = listed.iter().any(|l| {
            l.status == "ACTIVE" && acceptor.is_some() && l.acceptor.as_deref() == acceptor
        });
        return if successor_active {
            Standing::Unknown
        } else {
            Standing::Ended {
                agreement_id: newest.agreement_id.clone(),
            }
        };
    }
    if newest.ended() {
        return Standing::Ended {
            agreement_id: newest.agreement_id.clone(),
        };
    }
    Standing::Unknown
}

/// An ended agreement's licence, from GetAgreementEntitlements (AgreementEntitlementStatus):
/// DEPROVISIONED is the end (as `License Deprovisioned` / `unsubscribe-success`), FAILED a
/// purchase that never went through; PROVISIONED (or anything else) is the one-hour final
/// metering window after `Purchase Agreement Ended` / `unsubscribe-pending` (spec §4), so the
/// subscription only begins its cancellation and usage of that hour still bills.
pub(crate) fn ended_status(license_status: Option<&str>) -> SubscriptionStatus {
    match license_status {
        Some("DEPROVISIONED") => SubscriptionStatus::Cancelled,
        Some("FAILED") => SubscriptionStatus::Failed,
        _ => SubscriptionStatus::UnsubscribePending,
    }
}

/// The operator-facing reason a status could not be read.
pub(crate) fn unknown_reason(operation: &str, error: &ProviderError) -> String {
    match error {
        ProviderError::Configuration(_) => format!(
            "{error}; the IAM policy must allow aws-marketplace:{operation} (docs/listing-on-aws.md)"
        ),
        other => format!("{operation} failed: {other}"),
    }
}

pub(crate) fn search_filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

impl AwsProvider {
    /// Every page of SearchAgreements for one filter besides the proposer and type filters.
    pub(crate) async fn search_agreements(
        &self,
        name: &str,
        value: &str,
    ) -> Result<Vec<Listed>, ProviderError> {
        let mut all = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .retry
                .run("SearchAgreements", || async {
                    self.agreement
                        .search_agreements()
                        .catalog("AWSMarketplace")
                        .filters(search_filter("PartyType", "Proposer"))
                        .filters(search_filter("AgreementType", "PurchaseAgreement"))
                        .filters(search_filter(name, value))
                        .max_results(50)
                        .set_next_token(next.clone())
                        .send()
                        .await
                        .map_err(AwsFailure::from_sdk)
                })
                .await
                .map_err(|f| f.into_provider_error("SearchAgreements"))?;
            all.extend(
                page.agreement_view_summaries()
                    .iter()
                    .filter_map(Listed::of),
            );
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(all),
            }
        }
    }

    /// The status of the licence of one agreement (GetAgreementEntitlements, first page: one
    /// SaaS product per agreement).
    pub(crate) async fn license_status(
        &self,
        agreement_id: &str,
    ) -> Result<Option<String>, ProviderError> {
        let page = self
            .retry
            .run("GetAgreementEntitlements", || async {
                self.agreement
                    .get_agreement_entitlements()
                    .agreement_id(agreement_id)
                    .send()
                    .await
                    .map_err(AwsFailure::from_sdk)
            })
            .await
            .map_err(|f| f.into_provider_error("GetAgreementEntitlements"))?;
        Ok(page
            .agreement_entitlements()
            .iter()
            .find_map(|e| e.status())
            .map(|s| s.as_str().to_owned()))
    }

    /// Each subscription's status as its agreements say (`Ok(None)`: not stated), or why it
    /// could not be read. Keyed by external id.
    pub(crate) async fn agreement_statuses(
        &self,
        known: &[&ExternalRef],
    ) -> HashMap<String, Result<Option<SubscriptionStatus>, String>> {
        let mut listed_by_product: HashMap<&str, Result<Vec<Listed>, String>> = HashMap::new();
        let mut out = HashMap::new();
        for subscription in known {
            let product_id = self
                .config
                .product(&subscription.product_code)
                .and_then(|p| p.product_id.as_deref());
            let listed = match (product_id, &subscription.license_arn) {
                (Some(product_id), _) => {
                    if !listed_by_product.contains_key(product_id) {
                        let found = self
                            .search_agreements("ResourceIdentifier", product_id)
                            .await
                            .map_err(|e| unknown_reason("SearchAgreements", &e));
                        listed_by_product.insert(product_id, found);
                    }
                    listed_by_product
                        .get(product_id)
                        .cloned()
                        .unwrap_or(Ok(Vec::new()))
                }
                (None, Some(arn)) => self
                    .search_agreements("LicenseArn", arn)
                    .await
                    .map_err(|e| unknown_reason("SearchAgreements", &e)),
                (None, None) => Err(format!(
                    "set product_id of [[aws.products]] {} to compare agreement status",
                    subscription.product_code
                )),
            };
            let status = match listed {
                Ok(listed) => self.status_of(subscription, &listed).await,
                Err(reason) => Err(reason),
            };
            out.insert(subscription.external_id.clone(), status);
        }
        out
    }

    async fn status_of(
        &self,
        subscription: &ExternalRef,
        listed: &[Listed],
    ) -> Result<Option<SubscriptionStatus>, String> {
        match standing(subscription, listed) {
            Standing::Active => Ok(Some(SubscriptionStatus::Active)),
            Standing::Unknown => Ok(None),
            Standing::Ended { agreement_id } => match self.license_status(&agreement_id).await {
                Ok(license) => Ok(Some(ended_status(license.as_deref()))),
                Err(e) => Err(unknown_reason("GetAgreementEntitlements", &e)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use marketlink_core::Marketplace;

    use super::*;

    fn sub(license: Option<&str>, account: Option<&str>) -> ExternalRef {
        ExternalRef {
            marketplace: Marketplace::AWS,
            external_id: "x".into(),
            product_code: "p".into(),
            customer_id: "c".into(),
            customer_account_id: account.map(str::to_owned),
            license_arn: license.map(str::to_owned),
        }
    }

    fn listed(id: &str, status: &str, buyer: &str, license: &str, updated: i64) -> Listed {
        Listed {
            agreement_id: id.into(),
            status: status.into(),
            acceptor: Some(buyer.into()),
            licenses: vec![license.into()],
            updated,
        }
    }

    #[test]
    fn active_ended_and_superseded_agreements() {
        let cancelled = [listed("a1", "CANCELLED", "111", "L1", 5)];
        let by_licence = sub(Some("L1"), Some("111"));
        assert_eq!(
            standing(&by_licence, &cancelled),
            Standing::Ended {
                agreement_id: "a1".into()
            }
        );
        // Classic: by buyer; a newer active agreement of the buyer wins.
        let classic = sub(None, Some("111"));
        let mut both = cancelled.to_vec();
        both.push(listed("a2", "ACTIVE", "111", "L2", 9));
        assert_eq!(standing(&classic, &both), Standing::Active);
        // Renewed with a new licence we never heard of: a successor is active, not ended.
        let renewed = [
            listed("a1", "RENEWED", "111", "L1", 5),
            listed("a2", "ACTIVE", "111", "L2", 5),
        ];
        assert_eq!(standing(&by_licence, &renewed), Standing::Unknown);
        // Replaced, and the replacement ended too: ended.
        let replaced = [listed("a1", "REPLACED", "111", "L1", 5)];
        assert!(matches!(
            standing(&by_licence, &replaced),
            Standing::Ended { .. }
        ));
        // Another buyer's agreements say nothing about ours; a status we do not know neither.
        assert_eq!(standing(&sub(None, Some("222")), &both), Standing::Unknown);
        assert_eq!(standing(&sub(None, None), &both), Standing::Unknown);
        let archived = [listed("a1", "ARCHIVED", "111", "L1", 5)];
        assert_eq!(standing(&by_licence, &archived), Standing::Unknown);
    }

    #[test]
    fn the_licence_decides_between_the_final_window_and_the_end() {
        assert_eq!(
            ended_status(Some("DEPROVISIONED")),
            SubscriptionStatus::Cancelled
        );
        assert_eq!(
            ended_status(Some("PROVISIONED")),
            SubscriptionStatus::UnsubscribePending
        );
        assert_eq!(ended_status(None), SubscriptionStatus::UnsubscribePending);
        assert_eq!(ended_status(Some("FAILED")), SubscriptionStatus::Failed);
    }

    #[test]
    fn access_denied_names_the_permission() {
        let denied =
            ProviderError::Configuration("SearchAgreements: denied (AccessDeniedException)".into());
        assert!(
            unknown_reason("SearchAgreements", &denied)
                .contains("aws-marketplace:SearchAgreements")
        );
    }
}
