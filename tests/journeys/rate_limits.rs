//! Rate limits through the real server: a client hammering sign-in gets 429 with Retry-After
//! while another key or kind is untouched; the vendor API is limited per API key.

use marketlink_core::Scope;
use marketlink_e2e::{browser, csrf, start_full, submit_form};
use marketlink_web::limits::Rate;
use reqwest::StatusCode;

#[tokio::test]
async fn sign_in_attempts_beyond_the_burst_get_429_and_other_kinds_are_untouched() {
    let stack = start_full(
        |_| {},
        |_| {},
        |config| {
            config.rate_limits.sign_in = Rate {
                per_minute: 6,
                burst: 3,
            };
        },
    )
    .await;
    let client = browser();
    let page = client
        .get(format!("{}/signin", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = csrf(&page);
    let attempt = || {
        client
            .post(format!("{}/signin", stack.app_url))
            .form(&[
                ("csrf", token.as_str()),
                ("email", "victim@acme.example"),
                ("password", "guess-guess-guess"),
            ])
            .send()
    };
    for _ in 0..3 {
        assert_eq!(attempt().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    let limited = attempt().await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry), "Retry-After {retry}");
    assert!(limited.text().await.unwrap().contains("Too many attempts"));
    // Admin login shares the sign-in bucket of this address; pages that only show a form,
    // and other kinds, do not.
    let admin = client
        .post(format!("{}/admin/login", stack.app_url))
        .form(&[
            ("csrf", token.as_str()),
            ("email", "x@y.z"),
            ("password", "p"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), StatusCode::TOO_MANY_REQUESTS);
    let form = client
        .get(format!("{}/signin", stack.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_vendor_api_is_limited_per_key() {
    let stack = start_full(
        |_| {},
        |_| {},
        |config| {
            config.rate_limits.api = Rate {
                per_minute: 60,
                burst: 5,
            };
        },
    )
    .await;
    let mut keys = Vec::new();
    for name in ["busy", "calm"] {
        let (key, plaintext, hash) = marketlink_web::api_auth::new_key(
            name,
            vec![Scope::EntitlementsRead],
            None,
            time::OffsetDateTime::UNIX_EPOCH,
        );
        stack.store.create_api_key(&key, &hash).await.unwrap();
        keys.push(plaintext);
    }
    let check = |key: String| {
        let url = format!(
            "{}/api/v1/check?tenant_id=00000000-0000-0000-0000-000000000000&feature=x",
            stack.app_url
        );
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..5 {
        assert_ne!(
            check(keys[0].clone()).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    let limited = check(keys[0].clone()).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().contains_key("retry-after"));
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Another key from the same address has its own bucket.
    assert_ne!(
        check(keys[1].clone()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn one_account_takes_ten_attempts_then_waits_whatever_the_address() {
    let stack = start_full(|_| {}, |_| {}, |_| {}).await;
    let attempt = |email: &'static str| {
        let app_url = stack.app_url.clone();
        async move {
            // A fresh browser each time, as a botnet would send them.
            let signin = format!("{app_url}/signin");
            submit_form(
                &browser(),
                &signin,
                &signin,
                &[("email", email), ("password", "guess-guess-guess")],
            )
            .await
        }
    };
    for _ in 0..10 {
        assert_eq!(
            attempt("victim@acme.example").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let locked = attempt("VICTIM@acme.example").await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((50..=60).contains(&retry), "Retry-After {retry}");
    assert!(
        locked
            .text()
            .await
            .unwrap()
            .contains("Too many sign-in attempts")
    );
    assert_eq!(
        attempt("someone-else@acme.example").await.status(),
        StatusCode::UNAUTHORIZED
    );
}
