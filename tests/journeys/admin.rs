//! The admin portal: operator sign-in, tenants, subscriptions, timeline, dead letters.

use marketlink_core::{AuthenticatedMessage, Marketplace};
use marketlink_e2e::{aws_buyer_signs_up, browser, csrf, start_full};
use marketlink_sandbox::aws::OfferKind;
use marketlink_store::QueueState;
use reqwest::StatusCode;

const PASSWORD: &str = "operator passphrase 42";

#[tokio::test]
async fn operators_see_tenants_subscriptions_and_retry_dead_letters() {
    let ops = marketlink_e2e::operator("ops@vendor.example", PASSWORD).await;
    let stack = start_full(
        |_| {},
        |_| {},
        move |config| {
            config.admin.users = vec![ops];
        },
    )
    .await;
    let purchase = aws_buyer_signs_up(
        &stack,
        &browser(),
        OfferKind::Subscription,
        "444455556666",
        "buyer@acme.example",
    )
    .await;

    // A buyer's session is not an operator's.
    let buyer = browser();
    let away = buyer
        .get(format!("{}/admin", stack.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(away.status(), StatusCode::SEE_OTHER);
    assert_eq!(away.headers()["location"], "/admin/login");

    let ops = browser();
    let login = ops
        .get(format!("{}/admin/login", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = csrf(&login);
    let wrong = ops
        .post(format!("{}/admin/login", stack.app_url))
        .form(&[
            ("csrf", token.as_str()),
            ("email", "ops@vendor.example"),
            ("password", "guess"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let ok = ops
        .post(format!("{}/admin/login", stack.app_url))
        .form(&[
            ("csrf", token.as_str()),
            ("email", "OPS@vendor.example"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    let text = |path: String| {
        let ops = ops.clone();
        async move { ops.get(path).send().await.unwrap().text().await.unwrap() }
    };
    let overview = text(format!("{}/admin", stack.app_url)).await;
    assert!(
        overview.contains("pending") && overview.contains("aws"),
        "{overview}"
    );

    let tenants = text(format!("{}/admin/tenants?q=ACME", stack.app_url)).await;
    assert!(tenants.contains("buyer@acme.example"));
    let none = text(format!("{}/admin/tenants?q=nobody-here", stack.app_url)).await;
    assert!(!none.contains("buyer@acme.example"));

    let subs = text(format!(
        "{}/admin/subscriptions?marketplace=aws&status=pending",
        stack.app_url
    ))
    .await;
    assert!(subs.contains("mlsandboxclassic0000000001"));
    let external = marketlink_core::ExternalRef::aws_classic_id(
        &purchase.customer_identifier,
        &purchase.product_code,
    );
    let sub = stack
        .store
        .find_subscription(&Marketplace::AWS, &external)
        .await
        .unwrap()
        .unwrap();
    let detail = text(format!("{}/admin/subscriptions/{}", stack.app_url, sub.id)).await;
    assert!(
        detail.contains("registered"),
        "the timeline shows the landing registration"
    );

    // A marketplace message that could not be applied is visible and can be retried.
    let message = AuthenticatedMessage {
        marketplace: Marketplace::parse("gone").unwrap(),
        dedup_key: "orphan-1".into(),
        kind: "mystery".into(),
        received_at: time::OffsetDateTime::UNIX_EPOCH,
        payload: serde_json::json!({}),
    };
    let now = time::OffsetDateTime::UNIX_EPOCH;
    stack.store.inbox_insert(&message, now).await.unwrap();
    for item in stack
        .store
        .inbox_claim(now, time::Duration::minutes(1), 10)
        .await
        .unwrap()
    {
        stack
            .store
            .inbox_bury(&item, "no provider configured for gone", now)
            .await
            .unwrap();
    }
    let dead = text(format!("{}/admin/dead", stack.app_url)).await;
    assert!(dead.contains("no provider configured for gone"));
    let item = stack
        .store
        .inbox_list(QueueState::Dead, 10)
        .await
        .unwrap()
        .remove(0);
    let retried = ops
        .post(format!(
            "{}/admin/dead/inbox/{}/retry",
            stack.app_url, item.id
        ))
        .form(&[("csrf", csrf(&dead).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), StatusCode::SEE_OTHER);
    let forged = ops
        .post(format!(
            "{}/admin/dead/inbox/{}/retry",
            stack.app_url, item.id
        ))
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let log = stack
        .store
        .audit_log(Some("admin:ops@vendor.example"), 10)
        .await
        .unwrap();
    assert!(log.iter().any(|e| e.action == "inbox.requeue"), "{log:?}");

    // A dead usage hour is shown with its reason and can be sent again.
    let now = marketlink_core::Clock::now(&marketlink_core::SystemClock);
    let hour = marketlink_engine::metering::hour_floor(now);
    stack
        .store
        .usage_ingest(
            &[marketlink_store::NewUsageEvent {
                id: uuid::Uuid::now_v7(),
                subscription_id: sub.id,
                dimension: "api_calls".into(),
                occurred_at: now,
                hour,
                quantity: marketlink_core::Quantity::from_units(3),
                idempotency_key: None,
                allocations: vec![],
                hour_cap: None,
            }],
            now,
        )
        .await
        .unwrap();
    // The running flusher leaves the current hour alone; claim it by hand and bury it.
    let claim = stack
        .store
        .usage_claim(now, hour, time::Duration::minutes(5), 10, |_| false)
        .await
        .unwrap();
    let settlements: Vec<_> = claim
        .hours
        .iter()
        .map(|h| {
            let reason = "CustomerNotEntitledException: not entitled".to_owned();
            (h.id, marketlink_store::UsageSettlement::Dead { reason })
        })
        .collect();
    assert_eq!(settlements.len(), 1);
    stack
        .store
        .usage_settle(claim.lease_id, &settlements, now)
        .await
        .unwrap();
    let usage = text(format!("{}/admin/usage", stack.app_url)).await;
    assert!(usage.contains("CustomerNotEntitledException") && usage.contains("Send again"));
    // The per-hour view counts the buried total as failed: Sent 0, Waiting 0, Failed 1.
    assert!(usage.contains("Sent and pending per hour"), "{usage}");
    assert!(
        usage.contains("<td>aws</td><td>0</td><td>0</td><td>1</td><td>0</td>"),
        "{usage}"
    );
    let resent = ops
        .post(format!(
            "{}/admin/dead/usage/{}/retry",
            stack.app_url, settlements[0].0
        ))
        .form(&[("csrf", csrf(&usage).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resent.status(), StatusCode::SEE_OTHER);
    assert_eq!(resent.headers()["location"], "/admin/usage?retried=1");
    let hours = stack.store.usage_hours_of(sub.id).await.unwrap();
    assert_ne!(hours[0].state, marketlink_store::UsageHourState::Dead);
    let log = stack
        .store
        .audit_log(Some("admin:ops@vendor.example"), 10)
        .await
        .unwrap();
    assert!(log.iter().any(|e| e.action == "usage.requeue"), "{log:?}");
}
