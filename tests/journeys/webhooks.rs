//! Provisioning webhooks to the vendor's product: signed, retried, replayable.

use std::sync::{Arc, Mutex};

use axum::{Router, body::Bytes, http::HeaderMap, http::StatusCode as AxumStatus, routing::post};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use marketlink_e2e::{aws_buyer_signs_up, browser, eventually, start_full};
use marketlink_engine::webhooks::WebhookSettings;
use marketlink_sandbox::aws::{OfferKind, SubscriptionAction};
use serde_json::Value;
use sha2::Sha256;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Default)]
struct Receiver {
    /// (webhook-id, type, signature valid)
    seen: Mutex<Vec<(String, String, bool)>>,
    /// Answer 503 to this many deliveries first.
    failures_left: Mutex<u32>,
}

/// Verifies like a receiver would, independently of marketlink's signing code.
fn valid(headers: &HeaderMap, body: &[u8]) -> bool {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let key = STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", get("webhook-id"), get("webhook-timestamp")).as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    get("webhook-signature").split(' ').any(|s| s == expected)
}

async fn receiver(failures: u32) -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver {
        failures_left: Mutex::new(failures),
        ..Default::default()
    });
    let shared = state.clone();
    let app = Router::new().route(
        "/hooks",
        post(move |headers: HeaderMap, body: Bytes| {
            let state = shared.clone();
            async move {
                let payload: Value = serde_json::from_slice(&body).unwrap();
                let id = headers["webhook-id"].to_str().unwrap().to_owned();
                state.seen.lock().unwrap().push((
                    id,
                    payload["type"].as_str().unwrap().to_owned(),
                    valid(&headers, &body),
                ));
                let mut left = state.failures_left.lock().unwrap();
                if *left > 0 {
                    *left -= 1;
                    AxumStatus::SERVICE_UNAVAILABLE
                } else {
                    AxumStatus::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, state)
}

fn types(r: &Receiver) -> Vec<String> {
    r.seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, t, _)| t.clone())
        .collect()
}

#[tokio::test]
async fn lifecycle_webhooks_are_signed_retried_and_replayable() {
    let (url, hooks) = receiver(1).await;
    let ops = marketlink_e2e::operator("ops@vendor.example", "operator passphrase 42").await;
    let stack = start_full(
        |_| {},
        |_| {},
        move |config| {
            config.webhooks = Some(WebhookSettings {
                url,
                secret: SECRET.into(),
            });
            config.admin.users = vec![ops];
        },
    )
    .await;
    let purchase = aws_buyer_signs_up(
        &stack,
        &browser(),
        OfferKind::Subscription,
        "444455556666",
        "hooks@example.com",
    )
    .await;
    stack
        .aws
        .send_subscription_event(&purchase.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    eventually("tenant, link and activation delivered", || async {
        let seen = types(&hooks);
        [
            "tenant.created",
            "subscription.linked",
            "subscription.activated",
        ]
        .iter()
        .all(|t| seen.iter().any(|s| s == t))
    })
    .await;
    // The first delivery failed (503) and is retried, with backoff, under the same id.
    let first = hooks.seen.lock().unwrap()[0].0.clone();
    eventually("the failed delivery retried", || async {
        hooks
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(id, _, _)| id == &first)
            .count()
            == 2
    })
    .await;
    {
        let seen = hooks.seen.lock().unwrap();
        assert!(
            seen.iter().all(|(_, _, ok)| *ok),
            "every delivery is signed: {seen:?}"
        );
    }

    // Replay a delivered webhook: the receiver gets it again with the same id.
    let done = stack
        .store
        .outbox_list(marketlink_store::QueueState::Done, 50)
        .await
        .unwrap();
    let activated = done
        .iter()
        .find(|job| job.payload["type"] == "subscription.activated")
        .expect("the activation webhook is recorded as delivered");
    assert_eq!(
        activated.payload["data"]["subscription"]["status"],
        "active"
    );
    let id = format!("msg_{}", activated.id.simple());
    stack
        .store
        .outbox_replay(activated.id, time::OffsetDateTime::UNIX_EPOCH)
        .await
        .unwrap();
    eventually("replayed", || async {
        hooks
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(seen, _, _)| seen == &id)
            .count()
            == 2
    })
    .await;

    // Operators see deliveries in the admin portal and replay from there too.
    let ops = browser();
    let login = ops
        .get(format!("{}/admin/login", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    ops.post(format!("{}/admin/login", stack.app_url))
        .form(&[
            ("csrf", marketlink_e2e::csrf(&login).as_str()),
            ("email", "ops@vendor.example"),
            ("password", "operator passphrase 42"),
        ])
        .send()
        .await
        .unwrap();
    let page = ops
        .get(format!("{}/admin/webhooks", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&id) && page.contains("subscription.activated"),
        "{page}"
    );
    let replayed = ops
        .post(format!(
            "{}/admin/webhooks/{}/replay",
            stack.app_url, activated.id
        ))
        .form(&[("csrf", marketlink_e2e::csrf(&page).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), reqwest::StatusCode::SEE_OTHER);
    eventually("replayed from the portal", || async {
        hooks
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(seen, _, _)| seen == &id)
            .count()
            == 3
    })
    .await;
}
