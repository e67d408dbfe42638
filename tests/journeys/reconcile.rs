//! Reconciliation against the Microsoft sandbox: a webhook is lost, `reconcile` notices and
//! repairs; a dry run changes nothing.

use marketlink_cli::run;
use marketlink_core::{Marketplace, Subscription, SubscriptionStatus};
use marketlink_e2e::{
    Stack, azure_land_and_sign_in, browser_trusting, csrf, eventually, start_full,
};
use marketlink_engine::reconcile::{Action, Drift};
use marketlink_sandbox::azure::{MarketplaceAction, PurchaseRequest};

const ALICE: &str = "11111111-aaaa-4bbb-8ccc-000000000001";

async fn subscription(stack: &Stack, id: &str) -> Option<Subscription> {
    stack
        .store
        .find_subscription(&Marketplace::AZURE, id)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_lost_webhook_is_repaired_by_reconcile() {
    // Every webhook is refused (wrong audience) and the sandbox gives up after one attempt:
    // the notification is lost, as when an endpoint was down for longer than Microsoft retries.
    let stack = start_full(
        |_| {},
        |azure| azure.webhook_max_attempts = 1,
        |config| {
            if let Some(azure) = config.azure.as_mut() {
                azure.webhook_audience = Some("not-our-app".into());
            }
        },
    )
    .await;
    let client = browser_trusting(&stack.azure.ca_pem);
    let purchase = stack
        .azure
        .purchase(PurchaseRequest {
            offer_id: "contoso-analytics".into(),
            plan_id: "pro".into(),
            quantity: Some(5),
            buyer_object_id: ALICE.into(),
            subscription_name: None,
            is_test: false,
        })
        .await
        .unwrap();
    let id = purchase.subscription_id.to_string();
    azure_land_and_sign_in(&client, &purchase.landing_url, ALICE).await;
    let html = client
        .get(format!("{}/signup", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    client
        .post(format!("{}/signup", stack.app_url))
        .form(&[
            ("csrf", csrf(&html).as_str()),
            ("name", "Alice Buyer"),
            ("email", "alice@fabrikam.example"),
            ("password", "correct-horse-battery"),
        ])
        .send()
        .await
        .unwrap();
    eventually("activated", || async {
        subscription(&stack, &id)
            .await
            .is_some_and(|s| s.status == SubscriptionStatus::Active)
    })
    .await;

    stack
        .azure
        .marketplace_action(purchase.subscription_id, MarketplaceAction::Suspend)
        .await
        .unwrap();
    eventually("the webhook is refused and given up", || async {
        stack
            .azure
            .webhook_attempts()
            .await
            .iter()
            .any(|a| a.action == "Suspend" && a.status == Some(401))
    })
    .await;
    assert_eq!(
        subscription(&stack, &id).await.unwrap().status,
        SubscriptionStatus::Active,
        "the lost webhook left us behind"
    );

    // A dry run reports the drift and changes nothing.
    let dry = run::reconcile_once(&stack.config, true).await.unwrap();
    let item = dry
        .items
        .iter()
        .find(|i| i.external_id == id)
        .expect("drift reported");
    assert_eq!(
        item.drift,
        Drift::StatusMismatch {
            ours: SubscriptionStatus::Active,
            theirs: SubscriptionStatus::Suspended
        }
    );
    assert!(matches!(item.action, Action::WouldRepair(_)));
    let sub = subscription(&stack, &id).await.unwrap();
    assert_eq!(sub.status, SubscriptionStatus::Active);

    // The real run applies the marketplace's state through the event path.
    let report = run::reconcile_once(&stack.config, false).await.unwrap();
    assert!(
        report
            .items
            .iter()
            .any(|i| i.external_id == id && matches!(i.action, Action::Repaired(_))),
        "{:#?}",
        report.items
    );
    assert_eq!(
        subscription(&stack, &id).await.unwrap().status,
        SubscriptionStatus::Suspended
    );
    let timeline = stack.store.timeline(sub.id, 100).await.unwrap();
    assert!(
        timeline
            .iter()
            .any(|e| e.source == "reconcile" && e.kind == "lifecycle:suspend"),
        "{timeline:?}"
    );
    // In step again: nothing left for this subscription.
    let again = run::reconcile_once(&stack.config, false).await.unwrap();
    assert!(
        again.items.iter().all(|i| i.external_id != id),
        "{:#?}",
        again.items
    );
}
