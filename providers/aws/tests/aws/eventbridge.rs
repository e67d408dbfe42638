//! EventBridge events over SQS and over HTTPS (API destination with a shared secret).

use marketlink_core::{
    EntitlementValue, EventKind, InboundMessage, Lifecycle, MarketplaceEvent, MarketplaceProvider,
    ProviderError,
};
use marketlink_sandbox::aws::{OfferKind, SubscriptionAction};
use serde_json::{Value, json};

use crate::common::*;

fn summary(events: &[MarketplaceEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match &e.kind {
            EventKind::Lifecycle { event, .. } => format!("{event:?}"),
            EventKind::EntitlementsChanged { entitlements } => format!(
                "Entitlements({})",
                entitlements
                    .iter()
                    .map(|e| match &e.value {
                        EntitlementValue::Integer(i) => format!("{}={i}", e.dimension),
                        other => format!("{}={other:?}", e.dimension),
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            EventKind::Renewed { .. } => "Renewed".into(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn every_eventbridge_event_over_sqs() {
    let h = start().await;
    let p =
        h.sb.purchase(CONCURRENT, OfferKind::Contract, BUYER)
            .unwrap();
    let resolved = h.resolve(&p.registration_token).await.subscription;
    let mut kinds = Vec::new();
    let mut got = Vec::new();
    // Interpret after each step, as the inbox worker would: GetEntitlements reads the present.
    let step = async |kinds: &mut Vec<String>, got: &mut Vec<Vec<String>>| {
        for m in h.authenticated().await {
            assert_eq!(m.dedup_key, m.payload["event"]["id"].as_str().unwrap());
            let events = h.interpret(&m).await.unwrap();
            for e in &events {
                assert_eq!(e.subscription, resolved, "{}", m.kind);
            }
            kinds.push(m.kind.clone());
            got.push(summary(&events));
        }
    };
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    step(&mut kinds, &mut got).await;
    h.sb.update_entitlements(&p.agreement_id, &[("seats", 20)])
        .await
        .unwrap();
    step(&mut kinds, &mut got).await;
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::UnsubscribePending)
        .await
        .unwrap();
    step(&mut kinds, &mut got).await;
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::UnsubscribeSuccess)
        .await
        .unwrap();
    step(&mut kinds, &mut got).await;
    assert_eq!(
        kinds,
        [
            // A direct offer: AWS sends only the Proposer variant of agreement events.
            "Purchase Agreement Created - Proposer",
            "License Updated - Manufacturer",
            "Purchase Agreement Amended - Proposer",
            "License Updated - Manufacturer",
            "Purchase Agreement Ended - Proposer",
            "License Deprovisioned - Manufacturer",
        ]
    );
    assert_eq!(
        got,
        [
            vec![],
            vec!["Activate".to_string(), "Entitlements(seats=10)".into()],
            vec!["Entitlements(seats=20)".into()],
            vec!["Activate".into(), "Entitlements(seats=20)".into()],
            vec!["BeginCancel".into()],
            vec!["Cancel".into()],
        ]
    );
}

#[tokio::test]
async fn events_before_resolve_use_the_same_reference() {
    let h = start().await;
    let a =
        h.sb.purchase(CONCURRENT, OfferKind::FreeTrial, BUYER)
            .unwrap();
    let b =
        h.sb.purchase(CONCURRENT, OfferKind::Subscription, BUYER)
            .unwrap();
    for p in [&a, &b] {
        h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
            .await
            .unwrap();
    }
    // A process that never resolved these tokens (e.g. restarted) interprets the events.
    let fresh = h.fresh_provider();
    let mut activations = Vec::new();
    for pulled in h.drain().await {
        let m = fresh.authenticate(&pulled.message).await.unwrap();
        for e in h.interpret_on(&fresh, &m).await.unwrap() {
            if matches!(
                e.kind,
                EventKind::Lifecycle {
                    event: Lifecycle::Activate,
                    ..
                }
            ) {
                activations.push(e);
            }
        }
    }
    assert_eq!(activations.len(), 2);
    let ra = h.resolve(&a.registration_token).await;
    let rb = h.resolve(&b.registration_token).await;
    assert_eq!(activations[0].subscription, ra.subscription);
    assert_eq!(activations[1].subscription, rb.subscription);
    assert_ne!(ra.subscription.external_id, rb.subscription.external_id);
    // Free trial confirmed by the Agreement API.
    assert_eq!(activations[0].free_trial, Some(true));
    assert_eq!(activations[1].free_trial, Some(false));
    assert!(ra.free_trial);

    // Ended carries no LicenseArn: the fresh process learned it from License Updated.
    h.sb.send_subscription_event(&a.agreement_id, SubscriptionAction::UnsubscribePending)
        .await
        .unwrap();
    let pulled = h.drain().await;
    let m = fresh.authenticate(&pulled[0].message).await.unwrap();
    let events = h.interpret_on(&fresh, &m).await.unwrap();
    assert_eq!(summary(&events), ["BeginCancel"]);
    assert_eq!(events[0].subscription, ra.subscription);

    // A third process, restarted after everything above: the names are in the store, so it
    // still knows which licence ended.
    h.sb.send_subscription_event(&b.agreement_id, SubscriptionAction::UnsubscribePending)
        .await
        .unwrap();
    let restarted = h.fresh_provider();
    let pulled = h.drain().await;
    let m = restarted.authenticate(&pulled[0].message).await.unwrap();
    let events = h.interpret_on(&restarted, &m).await.unwrap();
    assert_eq!(summary(&events), ["BeginCancel"]);
    assert_eq!(events[0].subscription, rb.subscription);
    // With nothing stored, the agreement is none of ours: no event rather than a wrong one.
    assert!(
        restarted
            .interpret(&m, &marketlink_core::EmptyDirectory)
            .await
            .unwrap()
            .is_empty()
    );
}

fn https_message(event: &Value, secret: Option<&str>) -> InboundMessage {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(s) = secret {
        headers.push(("x-marketlink-eventbridge-secret".into(), s.into()));
    }
    InboundMessage {
        channel: "eventbridge-http".into(),
        headers,
        body: event.to_string().into_bytes(),
    }
}

#[tokio::test]
async fn eventbridge_over_https_needs_the_shared_secret() {
    let h = start().await;
    let p =
        h.sb.purchase(CONCURRENT, OfferKind::Contract, BUYER)
            .unwrap();
    let resolved = h.resolve(&p.registration_token).await.subscription;
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let pulled = h.drain().await;
    let license_updated: Value = serde_json::from_slice(&pulled[1].message.body).unwrap();

    let ok = h
        .provider
        .authenticate(&https_message(&license_updated, Some(EB_SECRET)))
        .await
        .unwrap();
    assert_eq!(ok.kind, "License Updated - Manufacturer");
    let events = h.interpret(&ok).await.unwrap();
    assert_eq!(events[0].subscription, resolved);

    for secret in [
        None,
        Some("wrong"),
        Some("eventbridge-shared-secret-0123456780"),
    ] {
        let err = h
            .provider
            .authenticate(&https_message(&license_updated, secret))
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Unauthenticated(_)), "{err:?}");
    }
    // Not configured: refused.
    let closed = start_with(Default::default(), |c| c.eventbridge_secret = None).await;
    assert!(matches!(
        closed
            .provider
            .authenticate(&https_message(&license_updated, Some(EB_SECRET)))
            .await,
        Err(ProviderError::Unauthenticated(_))
    ));

    // Wrong source, wrong account, unknown product, stale.
    let mut bad = license_updated.clone();
    bad["source"] = json!("aws.evil");
    assert!(
        h.provider
            .authenticate(&https_message(&bad, Some(EB_SECRET)))
            .await
            .is_err()
    );
    let mut bad = license_updated.clone();
    bad["account"] = json!("999999999999");
    assert!(
        h.provider
            .authenticate(&https_message(&bad, Some(EB_SECRET)))
            .await
            .is_err()
    );
    // Another product of the same seller: genuine, taken, and left alone.
    let mut other = license_updated.clone();
    other["detail"]["product"]["code"] = json!("someoneelse");
    other["id"] = json!("another-products-event");
    other["detail"]["agreement"]["id"] = json!("agmt-anotherproduct00000000001");
    other["detail"]["license"]["arn"] =
        json!("arn:aws:license-manager::111122223333:license/l-anotherproduct");
    let taken = h
        .provider
        .authenticate(&https_message(&other, Some(EB_SECRET)))
        .await
        .unwrap();
    assert!(h.interpret(&taken).await.unwrap().is_empty());
    // EventBridge retries an API destination for 24 hours by default: a retry 23 hours on is
    // taken (the inbox drops it if the first delivery was stored), a day on it is stale.
    h.clock.advance(time::Duration::hours(23));
    let late = h
        .provider
        .authenticate(&https_message(&license_updated, Some(EB_SECRET)))
        .await
        .unwrap();
    assert_eq!(late.dedup_key, ok.dedup_key);
    h.clock.advance(time::Duration::hours(2));
    let err = h
        .provider
        .authenticate(&https_message(&license_updated, Some(EB_SECRET)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Unauthenticated(r) if r.contains("stale")),
        "{err:?}"
    );
}

#[tokio::test]
async fn renewal_and_superseded_agreements() {
    let h = start().await;
    let p =
        h.sb.purchase(CONCURRENT, OfferKind::Contract, BUYER)
            .unwrap();
    let resolved = h.resolve(&p.registration_token).await.subscription;
    let now = h.clock_now_rfc3339();
    let renew = json!({
        "version": "0", "id": "renew-event-1",
        "detail-type": "Purchase Agreement Created - Proposer",
        "source": "aws.agreement-marketplace", "account": SELLER, "time": now,
        "region": "us-east-1", "resources": [],
        "detail": {
            "requestId": "r", "catalog": "AWSMarketplace",
            "agreement": {"id": "agmt-renewed0000000000000001", "intent": "RENEW", "status": "ACTIVE",
                "startTime": "2027-01-01T00:00:00Z", "endTime": "2028-01-01T00:00:00Z",
                "previousAgreementId": p.agreement_id},
            "acceptor": {"accountId": BUYER}, "proposer": {"accountId": SELLER},
            "offer": {"id": "offer-x"}
        }
    });
    let m = h
        .provider
        .authenticate(&https_message(&renew, Some(EB_SECRET)))
        .await
        .unwrap();
    let events = h.interpret(&m).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].subscription, resolved);
    let EventKind::Renewed { term: Some(term) } = &events[0].kind else {
        panic!("{events:?}")
    };
    assert_eq!(term.end.unwrap().year(), 2028);

    // The old agreement ends as RENEWED: nothing is cancelled.
    let ended = json!({
        "version": "0", "id": "ended-event-1",
        "detail-type": "Purchase Agreement Ended - Proposer",
        "source": "aws.agreement-marketplace", "account": SELLER, "time": now,
        "region": "us-east-1", "resources": [],
        "detail": {"agreement": {"id": p.agreement_id, "status": "RENEWED"},
            "acceptor": {"accountId": BUYER}, "proposer": {"accountId": SELLER}}
    });
    let m = h
        .provider
        .authenticate(&https_message(&ended, Some(EB_SECRET)))
        .await
        .unwrap();
    assert!(h.interpret(&m).await.unwrap().is_empty());
}

impl Harness {
    fn clock_now_rfc3339(&self) -> String {
        use marketlink_core::Clock;
        self.clock
            .now()
            .replace_nanosecond(0)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    }
}
