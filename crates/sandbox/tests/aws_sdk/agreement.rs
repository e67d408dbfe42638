//! AWSMPCommerceService: DescribeAgreement and GetAgreementTerms.

use marketlink_sandbox::aws::{InjectedError, OfferKind};

use super::common::*;

#[tokio::test]
async fn describe_agreement_and_terms() {
    use aws_sdk_marketplaceagreement::{
        operation::{
            describe_agreement::DescribeAgreementError, get_agreement_terms::GetAgreementTermsError,
        },
        types::AcceptedTerm,
    };
    let h = start().await;
    let client = agreement(&h.url);
    let trial =
        h.sb.purchase(CONCURRENT, OfferKind::FreeTrial, BUYER)
            .unwrap();
    let out = client
        .describe_agreement()
        .agreement_id(&trial.agreement_id)
        .send()
        .await
        .unwrap();
    assert_eq!(out.agreement_id(), Some(trial.agreement_id.as_str()));
    assert_eq!(out.acceptor().and_then(|a| a.account_id()), Some(BUYER));
    assert_eq!(
        out.proposer().and_then(|a| a.account_id()),
        Some("111122223333")
    );
    assert_eq!(out.status().map(|s| s.as_str()), Some("ACTIVE"));
    // freeTrialSummary is in the current model but not in aws-sdk-marketplaceagreement 1.124.
    assert!(out.end_time().is_none());
    assert_eq!(
        out.proposal_summary().and_then(|p| p.offer_id()),
        Some(trial.offer_id.as_str())
    );

    let terms = client
        .get_agreement_terms()
        .agreement_id(&trial.agreement_id)
        .send()
        .await
        .unwrap();
    let trial_term = terms
        .accepted_terms()
        .iter()
        .find_map(|t| match t {
            AcceptedTerm::FreeTrialPricingTerm(t) => Some(t),
            _ => None,
        })
        .expect("free trial term");
    assert_eq!(trial_term.duration(), Some("P30D"));
    assert_eq!(trial_term.grants()[0].dimension_key(), Some("seats"));
    assert!(
        terms
            .accepted_terms()
            .iter()
            .any(|t| matches!(t, AcceptedTerm::UsageBasedPricingTerm(_)))
    );

    let contract = h.sb.purchase(CLASSIC, OfferKind::Contract, BUYER).unwrap();
    let out = client
        .describe_agreement()
        .agreement_id(&contract.agreement_id)
        .send()
        .await
        .unwrap();
    assert!(out.end_time().is_some());
    assert_eq!(
        out.estimated_charges().and_then(|e| e.agreement_value()),
        Some("1200.00")
    );
    let page = client
        .get_agreement_terms()
        .agreement_id(&contract.agreement_id)
        .max_results(2)
        .send()
        .await
        .unwrap();
    assert_eq!(page.accepted_terms().len(), 2);
    let rest = client
        .get_agreement_terms()
        .agreement_id(&contract.agreement_id)
        .next_token(page.next_token().unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        rest.accepted_terms()
            .iter()
            .any(|t| matches!(t, AcceptedTerm::ConfigurableUpfrontPricingTerm(_)))
    );

    let err = client
        .describe_agreement()
        .agreement_id("agmt-doesnotexist")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, DescribeAgreementError::ResourceNotFoundException(_)),
        "{err:?}"
    );
    let err = client
        .describe_agreement()
        .agreement_id("bad id!")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, DescribeAgreementError::ValidationException(_)),
        "{err:?}"
    );
    h.sb.inject_errors("GetAgreementTerms", InjectedError::Throttling, 1);
    let err = client
        .get_agreement_terms()
        .agreement_id(&contract.agreement_id)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, GetAgreementTermsError::ThrottlingException(_)),
        "{err:?}"
    );
    h.sb.inject_errors("DescribeAgreement", InjectedError::Internal, 1);
    let err = client
        .describe_agreement()
        .agreement_id(&contract.agreement_id)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, DescribeAgreementError::InternalServerException(_)),
        "{err:?}"
    );
}
