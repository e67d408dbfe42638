//! Agreement API (`marketplace-agreement`): the status, renewal chain, product, free trial and
//! term of an agreement.

use aws_sdk_marketplaceagreement::types::AcceptedTerm;
use marketlink_core::{ProviderError, Term};
use time::OffsetDateTime;

use crate::{AwsProvider, errors::AwsFailure};

/// What DescribeAgreement says about one agreement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Described {
    /// `ACTIVE`, `RENEWED`, `REPLACED`, `CANCELLED`, … (aws-eventbridge.md §6).
    pub status: Option<String>,
    /// The first agreement of its renewal or replacement chain (its own id if none).
    pub initial_agreement_id: Option<String>,
    /// Catalog product id (`prod-…`) of the agreement's first SaaS resource.
    pub product_id: Option<String>,
    pub acceptor_account_id: Option<String>,
    pub start: Option<OffsetDateTime>,
    pub end: Option<OffsetDateTime>,
}

impl Described {
    /// A successor agreement continues this one (renewal, replacement): its end ends nothing.
    pub fn superseded(&self) -> bool {
        self.status.as_deref().is_some_and(superseded_status)
    }
}

/// Agreement statuses that mean a successor agreement continues (aws-eventbridge.md §6), as
/// DescribeAgreement and `Purchase Agreement Ended` both report them.
pub(crate) fn superseded_status(status: &str) -> bool {
    matches!(
        status,
        "RENEWED" | "REPLACED" | "SUPERSEDED" | "ROLLED_BACK"
    )
}

/// What DescribeAgreement and GetAgreementTerms say about one agreement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AgreementFacts {
    pub free_trial: bool,
    pub term: Option<Term>,
    pub described: Described,
}

pub(crate) fn to_time(dt: &aws_smithy_types::DateTime) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(dt.secs()).ok()
}

impl AwsProvider {
    /// DescribeAgreement.
    pub(crate) async fn describe_agreement(
        &self,
        agreement_id: &str,
    ) -> Result<Described, ProviderError> {
        let described = self
            .retry
            .run("DescribeAgreement", || async {
                self.agreement
                    .describe_agreement()
                    .agreement_id(agreement_id)
                    .send()
                    .await
                    .map_err(AwsFailure::from_sdk)
            })
            .await
            .map_err(|f| f.into_provider_error("DescribeAgreement"))?;
        Ok(Described {
            status: described.status().map(|s| s.as_str().to_owned()),
            initial_agreement_id: described.initial_agreement_id().map(str::to_owned),
            product_id: described
                .proposal_summary()
                .and_then(|p| p.resources().iter().find_map(|r| r.id()))
                .map(str::to_owned),
            acceptor_account_id: described
                .acceptor()
                .and_then(|a| a.account_id())
                .map(str::to_owned),
            start: described.start_time().and_then(to_time),
            end: described.end_time().and_then(to_time),
        })
    }

    /// DescribeAgreement + every page of GetAgreementTerms.
    pub(crate) async fn agreement_facts(
        &self,
        agreement_id: &str,
    ) -> Result<AgreementFacts, ProviderError> {
        let described = self.describe_agreement(agreement_id).await?;
        let mut free_trial = false;
        let mut unit: Option<String> = None;
        let mut next: Option<String> = None;
        loop {
            let page = self
                .retry
                .run("GetAgreementTerms", || async {
                    self.agreement
                        .get_agreement_terms()
                        .agreement_id(agreement_id)
                        .set_next_token(next.clone())
                        .send()
                        .await
                        .map_err(AwsFailure::from_sdk)
                })
                .await
                .map_err(|f| f.into_provider_error("GetAgreementTerms"))?;
            for term in page.accepted_terms() {
                match term {
                    AcceptedTerm::FreeTrialPricingTerm(t) => {
                        free_trial = true;
                        if unit.is_none() {
                            unit = t.duration().map(str::to_owned);
                        }
                    }
                    AcceptedTerm::ValidityTerm(t) => {
                        if let Some(d) = t.agreement_duration() {
                            unit = Some(d.to_owned());
                        }
                    }
                    _ => {}
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => break,
            }
        }
        let (start, end) = (described.start, described.end);
        let term = (start.is_some() || end.is_some() || unit.is_some()).then_some(Term {
            start,
            end,
            unit,
        });
        Ok(AgreementFacts {
            free_trial,
            term,
            described,
        })
    }
}
