//! The buyer page and the state file.

use marketlink_core::clock::ManualClock;
use marketlink_sandbox::aws::{AwsSandboxConfig, OfferKind, SubscriptionAction};

use super::common::*;

#[tokio::test]
async fn buyer_page_posts_token_to_landing_url() {
    let config = AwsSandboxConfig {
        subscribe_delay_ms: 50,
        ..AwsSandboxConfig::default()
    };
    let h = start_with(config, ManualClock::new(wall_now())).await;
    let (status, html) = raw_get(&format!("{}/aws/buyer", h.url)).await;
    assert_eq!(status, 200);
    assert!(html.contains(CLASSIC));
    let form = format!("product_code={CLASSIC}&offer_id=offer-{CLASSIC}-trial&account_id={BUYER}");
    let (status, html) = raw_post(
        &h.url,
        "/aws/buyer/subscribe",
        &[("content-type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(r#"action="http://127.0.0.1:8080/aws/landing""#));
    assert!(html.contains(r#"name="x-amzn-marketplace-offer-type" value="free-trial""#));
    let ag = h.sb.agreements().pop().unwrap();
    assert!(html.contains(&ag.registration_token));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(
        h.sb.agreement(&ag.agreement_id).unwrap().state,
        marketlink_sandbox::aws::SubscriptionState::Subscribed
    );
    let (status, html) = raw_get(&format!("{}/aws/calls", h.url)).await;
    assert_eq!(status, 200);
    assert!(html.contains("Subscribe"));
    let (status, _) = raw_get(&format!("{}/aws/buyer/agreements", h.url)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn state_persists_to_json_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = AwsSandboxConfig {
        state_file: Some(dir.path().join("aws.json")),
        ..AwsSandboxConfig::default()
    };
    let h = start_with(config.clone(), ManualClock::new(wall_now())).await;
    let p = h.sb.purchase(CLASSIC, OfferKind::Contract, BUYER).unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let again = start_with(config, ManualClock::new(wall_now())).await;
    let ag = again.sb.agreement(&p.agreement_id).unwrap();
    assert_eq!(
        ag.state,
        marketlink_sandbox::aws::SubscriptionState::Subscribed
    );
    // The token still resolves and the SNS message is still queued.
    let out = metering(&again.url, "sandbox-secret")
        .resolve_customer()
        .registration_token(&p.registration_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.customer_identifier(),
        Some(p.customer_identifier.as_str())
    );
    let msgs = sqs(&again.url)
        .receive_message()
        .queue_url(again.sb.sns_queue_url())
        .send()
        .await
        .unwrap();
    assert_eq!(msgs.messages().len(), 1);
}

#[tokio::test]
async fn agreements_page_renews_and_the_chain_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = AwsSandboxConfig {
        state_file: Some(dir.path().join("aws.json")),
        ..AwsSandboxConfig::default()
    };
    let h = start_with(config.clone(), ManualClock::new(wall_now())).await;
    let p =
        h.sb.purchase(CONCURRENT, OfferKind::Contract, BUYER)
            .unwrap();
    h.sb.send_subscription_event(&p.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let (status, _) = raw_post(
        &h.url,
        &format!("/aws/buyer/agreements/{}/renew", p.agreement_id),
        &[("content-type", "application/x-www-form-urlencoded")],
        b"new_license=1",
    )
    .await;
    assert_eq!(status, 303);
    let old = h.sb.agreement(&p.agreement_id).unwrap();
    let next = old.successor.clone().unwrap();
    assert!(old.license_ended);
    let (_, html) = raw_get(&format!("{}/aws/buyer/agreements", h.url)).await;
    assert!(html.contains("RENEWED"), "{html}");
    // Renewing it again is refused with the reason.
    let (status, text) = raw_post(
        &h.url,
        &format!("/aws/buyer/agreements/{}/replace", p.agreement_id),
        &[("content-type", "application/x-www-form-urlencoded")],
        b"",
    )
    .await;
    assert_eq!(status, 400);
    assert!(text.contains("already superseded"), "{text}");

    let again = start_with(config, ManualClock::new(wall_now())).await;
    let new = again.sb.agreement(&next.agreement_id).unwrap();
    assert_eq!(new.initial_agreement_id(), p.agreement_id);
    assert_eq!(new.predecessor.unwrap().agreement_id, p.agreement_id);
    assert_ne!(new.license_arn, p.license_arn);
}
