//! Renewals, replacements and channel-partner agreements, with events in any order and a
//! restart in between: the subscription is found through the directory, never in memory.

use marketlink_core::{
    AuthenticatedMessage, EventKind, Lifecycle, Marketplace, MarketplaceEvent,
    SubscriptionDirectory,
};
use marketlink_sandbox::aws::{OfferKind, SubscriptionAction};

use crate::common::*;

fn kinds(events: &[MarketplaceEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match &e.kind {
            EventKind::Lifecycle { event, .. } => format!("{event:?}"),
            EventKind::EntitlementsChanged { .. } => "Entitlements".into(),
            EventKind::Relicensed { .. } => "Relicensed".into(),
            EventKind::Renewed { .. } => "Renewed".into(),
            other => format!("{other:?}"),
        })
        .collect()
}

fn ends(events: &[MarketplaceEvent]) -> bool {
    events.iter().any(|e| {
        matches!(
            e.kind,
            EventKind::Lifecycle {
                event: Lifecycle::Cancel | Lifecycle::BeginCancel,
                ..
            }
        )
    })
}

#[tokio::test]
async fn a_renewal_with_a_new_licence_in_reverse_order_after_a_restart() {
    let h = start().await;
    let p =
        h.sb.purchase(CONCURRENT, OfferKind::Contract, BUYER)
            .unwrap();
    let resolved = h.resolve(&p.registration_token).await.subscription;
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    h.interpret_all().await;

    let renewal = h.sb.renew(&p.agreement_id, true).await.unwrap();
    let mut messages: Vec<AuthenticatedMessage> = h.authenticated().await;
    let order: Vec<&str> = messages.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(
        order,
        [
            "Purchase Agreement Created - Proposer",
            "License Updated - Manufacturer",
            "Purchase Agreement Ended - Proposer",
            "License Deprovisioned - Manufacturer",
        ]
    );
    // The worst order: the old licence ends first, the renewal's Created comes last.
    messages.reverse();
    let restarted = h.fresh_provider();
    let mut seen = Vec::new();
    for m in &messages {
        let events = h.interpret_on(&restarted, m).await.unwrap();
        assert!(!ends(&events), "{}: {events:?}", m.kind);
        seen.push(kinds(&events));
    }
    assert_eq!(
        seen,
        [
            vec![],
            vec![],
            vec!["Relicensed", "Activate", "Entitlements"],
            vec!["Renewed"],
        ]
    );
    let now = h
        .dir
        .get(&Marketplace::AWS, &resolved.external_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        now.license_arn.as_deref(),
        Some(renewal.license_arn.as_str())
    );
    // Ending the renewal ends the subscription.
    h.sb.send_subscription_event(
        &renewal.agreement_id,
        SubscriptionAction::UnsubscribeSuccess,
    )
    .await
    .unwrap();
    let ended = h.interpret_all().await;
    assert_eq!(kinds(&ended[0].1), ["Cancel"]);
    assert_eq!(ended[0].1[0].subscription.external_id, resolved.external_id);
}

#[tokio::test]
async fn a_channel_partner_agreement_works_without_the_agreement_api() {
    let mut scenario = marketlink_sandbox::aws::AwsSandboxConfig::default();
    for product in &mut scenario.products {
        for offer in &mut product.offers {
            offer.channel_partner = true;
        }
    }
    let h = start_with(scenario, |_| {}).await;
    let p =
        h.sb.purchase(CONCURRENT, OfferKind::Contract, BUYER)
            .unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let got = h.interpret_all().await;
    assert_eq!(got[0].0, "Purchase Agreement Created - Manufacturer");
    let activation = &got[1].1;
    assert_eq!(kinds(activation), ["Activate", "Entitlements"]);
    assert_eq!(activation[0].free_trial, None, "terms unreadable: unknown");
    for action in [
        SubscriptionAction::UnsubscribePending,
        SubscriptionAction::UnsubscribeSuccess,
    ] {
        h.sb.send_subscription_event(&p.agreement_id, action)
            .await
            .unwrap();
    }
    let got = h.interpret_all().await;
    assert_eq!(kinds(&got[0].1), ["BeginCancel"]);
    assert_eq!(kinds(&got[1].1), ["Cancel"]);
}
