//! SearchAgreements through the official SDK (RPC v2 CBOR) and raw awsJson1.0.

use aws_sdk_marketplaceagreement::{
    operation::search_agreements::SearchAgreementsError,
    types::{Filter, Sort, SortOrder, ValidationExceptionReason},
};
use marketlink_core::clock::ManualClock;
use marketlink_sandbox::aws::{AwsSandboxConfig, OfferKind, SubscriptionAction};
use serde_json::json;
use time::Duration;

use super::common::*;

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn product_id(code: &str) -> String {
    AwsSandboxConfig::default()
        .products
        .iter()
        .find(|p| p.product_code == code)
        .map(|p| p.product_id.clone())
        .unwrap()
}

#[tokio::test]
async fn search_filters_pages_and_sorts_the_sellers_agreements() {
    let h = start().await;
    let client = agreement(&h.url);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let p =
            h.sb.purchase(CONCURRENT, OfferKind::Contract, BUYER)
                .unwrap();
        h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
            .await
            .unwrap();
        ids.push(p);
        h.clock.advance(Duration::seconds(10));
    }
    let other =
        h.sb.purchase(CLASSIC, OfferKind::Subscription, "777788889999")
            .unwrap();
    let since = clock_now(&h);
    h.clock.advance(Duration::seconds(10));
    h.sb.send_subscription_event(&ids[1].agreement_id, SubscriptionAction::UnsubscribeSuccess)
        .await
        .unwrap();

    let search = || {
        client
            .search_agreements()
            .catalog("AWSMarketplace")
            .filters(filter("PartyType", "Proposer"))
            .filters(filter("AgreementType", "PurchaseAgreement"))
    };
    // The product's agreements, two per page, sorted by start time, newest first.
    let product = product_id(CONCURRENT);
    let first = search()
        .filters(filter("ResourceIdentifier", &product))
        .sort(
            Sort::builder()
                .sort_by("StartTime")
                .sort_order(SortOrder::Descending)
                .build(),
        )
        .max_results(2)
        .send()
        .await
        .unwrap();
    let got: Vec<_> = first
        .agreement_view_summaries()
        .iter()
        .filter_map(|s| s.agreement_id())
        .collect();
    assert_eq!(
        got,
        [ids[2].agreement_id.as_str(), ids[1].agreement_id.as_str()]
    );
    let token = first.next_token().expect("a second page").to_owned();
    let second = search()
        .filters(filter("ResourceIdentifier", &product))
        .sort(
            Sort::builder()
                .sort_by("StartTime")
                .sort_order(SortOrder::Descending)
                .build(),
        )
        .max_results(2)
        .next_token(token)
        .send()
        .await
        .unwrap();
    let got: Vec<_> = second
        .agreement_view_summaries()
        .iter()
        .filter_map(|s| s.agreement_id())
        .collect();
    assert_eq!(got, [ids[0].agreement_id.as_str()]);
    assert_eq!(second.next_token(), None);

    // AfterLastUpdateTime: only the agreement that changed since; its status, licence, buyer.
    let changed = search()
        .filters(filter(
            "AfterLastUpdateTime",
            &since
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
        ))
        .send()
        .await
        .unwrap();
    let [summary] = changed.agreement_view_summaries() else {
        panic!("{changed:?}");
    };
    assert_eq!(summary.agreement_id(), Some(ids[1].agreement_id.as_str()));
    assert_eq!(summary.status().map(|s| s.as_str()), Some("CANCELLED"));
    assert_eq!(
        summary.entitlements()[0].license_arn(),
        Some(ids[1].license_arn.as_str())
    );
    assert_eq!(summary.acceptor().and_then(|a| a.account_id()), Some(BUYER));
    assert!(summary.last_update_time().is_some());

    // LicenseArn, AcceptorAccountId and Status filters.
    let by_licence = search()
        .filters(filter("LicenseArn", &ids[0].license_arn))
        .send()
        .await
        .unwrap();
    assert_eq!(by_licence.agreement_view_summaries().len(), 1);
    let by_buyer = search()
        .filters(filter("AcceptorAccountId", "777788889999"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        by_buyer.agreement_view_summaries()[0].agreement_id(),
        Some(other.agreement_id.as_str())
    );
    let active = search()
        .filters(filter("Status", "ACTIVE"))
        .send()
        .await
        .unwrap();
    assert_eq!(active.agreement_view_summaries().len(), 3);
    // As acceptor the seller has none.
    let acceptor = client
        .search_agreements()
        .filters(filter("PartyType", "Acceptor"))
        .filters(filter("AgreementType", "PurchaseAgreement"))
        .send()
        .await
        .unwrap();
    assert!(acceptor.agreement_view_summaries().is_empty());
}

#[tokio::test]
async fn search_refuses_what_the_model_refuses() {
    let h = start().await;
    let client = agreement(&h.url);
    let reason = |e: SearchAgreementsError| match e {
        SearchAgreementsError::ValidationException(v) => v.reason().cloned(),
        other => panic!("{other:?}"),
    };
    // AgreementType is required.
    let err = client
        .search_agreements()
        .filters(filter("PartyType", "Proposer"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(reason(err), Some(ValidationExceptionReason::InvalidFilters));
    let err = client
        .search_agreements()
        .filters(filter("AgreementType", "PurchaseAgreement"))
        .max_results(51)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        reason(err),
        Some(ValidationExceptionReason::InvalidMaxResults)
    );
    let err = client
        .search_agreements()
        .filters(filter("AgreementType", "PurchaseAgreement"))
        .filters(filter("Colour", "blue"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        reason(err),
        Some(ValidationExceptionReason::InvalidFilterName)
    );
    let two_values = Filter::builder()
        .name("Status")
        .values("ACTIVE")
        .values("CANCELLED")
        .build();
    let err = client
        .search_agreements()
        .filters(filter("AgreementType", "PurchaseAgreement"))
        .filters(two_values)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        reason(err),
        Some(ValidationExceptionReason::InvalidFilterValues)
    );
    let err = client
        .search_agreements()
        .filters(filter("AgreementType", "PurchaseAgreement"))
        .filters(filter("PartyType", "Acceptor"))
        .sort(Sort::builder().sort_by("LastUpdateTime").build())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(reason(err), Some(ValidationExceptionReason::InvalidSortBy));
    let err = client
        .search_agreements()
        .filters(filter("AgreementType", "PurchaseAgreement"))
        .next_token("nonsense")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        reason(err),
        Some(ValidationExceptionReason::InvalidNextToken)
    );
    // Eleven filters: over the FilterList's maximum of 10.
    let mut eleven = client.search_agreements();
    for name in [
        "AgreementType",
        "PartyType",
        "Status",
        "OfferId",
        "LicenseArn",
        "AcceptorAccountId",
        "ResourceIdentifier",
        "ResourceType",
        "InitialAgreementId",
        "OfferSetId",
        "AfterStartTime",
    ] {
        eleven = eleven.filters(filter(name, "x"));
    }
    let err = eleven.send().await.unwrap_err().into_service_error();
    assert_eq!(reason(err), Some(ValidationExceptionReason::InvalidFilters));
}

#[tokio::test]
async fn search_over_json_hides_channel_partner_agreements() {
    let mut config = AwsSandboxConfig::default();
    config.products[1].offers[1].channel_partner = true;
    let cppo_offer = config.products[1].offers[1].kind;
    let h = start_with(config, ManualClock::new(wall_now())).await;
    let cppo = h.sb.purchase(CONCURRENT, cppo_offer, BUYER).unwrap();
    let direct =
        h.sb.purchase(CONCURRENT, OfferKind::Subscription, BUYER)
            .unwrap();
    let (code, v) = agreement_json(
        &h,
        "SearchAgreements",
        json!({"filters": [{"name": "AgreementType", "values": ["PurchaseAgreement"]},
            {"name": "AcceptorAccountId", "values": [BUYER]}]}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let ids: Vec<_> = v["agreementViewSummaries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["agreementId"].clone())
        .collect();
    assert_eq!(
        ids,
        [json!(direct.agreement_id)],
        "{v}; cppo {}",
        cppo.agreement_id
    );
    assert!(v["agreementViewSummaries"][0]["lastUpdateTime"].is_number());
    // The model's error members on awsJson: reason and fields.
    let (code, v) = agreement_json(
        &h,
        "SearchAgreements",
        json!({"filters": [{"name": "Status", "values": ["ACTIVE"]}]}),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(v["__type"], "ValidationException");
    assert_eq!(v["reason"], "INVALID_FILTERS");
    assert_eq!(v["fields"][0]["name"], "filters");
}
