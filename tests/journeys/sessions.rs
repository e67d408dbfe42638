//! Sessions: they change hands at sign-in (a CSRF token shown before no longer works), end
//! when their operator leaves, belong to one deployment, and a marketplace sign-in completes
//! only with its own `state`, once.

use marketlink_e2e::{
    azure_sign_in_callback_url, browser, browser_trusting, csrf, operator, start_full, submit_form,
};
use marketlink_sandbox::azure::PurchaseRequest;
use reqwest::StatusCode;

const PASSWORD: &str = "operator passphrase 42";
const ALICE: &str = "11111111-aaaa-4bbb-8ccc-000000000001";

#[tokio::test]
async fn the_csrf_token_from_before_sign_in_is_refused_after_it() {
    let ops = operator("ops@vendor.example", PASSWORD).await;
    let stack = start_full(|_| {}, |_| {}, move |config| config.admin.users = vec![ops]).await;
    let ops = browser();
    let login_page = format!("{}/admin/login", stack.app_url);
    let before = csrf(
        &ops.get(&login_page)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let signed_in = submit_form(
        &ops,
        &login_page,
        &login_page,
        &[("email", "ops@vendor.example"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);

    let logout = format!("{}/admin/logout", stack.app_url);
    let stale = ops
        .post(&logout)
        .form(&[("csrf", before.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::FORBIDDEN);
    let admin = format!("{}/admin", stack.app_url);
    assert_eq!(
        ops.get(&admin).send().await.unwrap().status(),
        StatusCode::OK,
        "still signed in"
    );
    let out = submit_form(&ops, &admin, &logout, &[]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
}

/// An operator removed from `[admin] users`, or whose password changed, loses the portal at
/// their next request (the configuration is read at start-up, so after a restart); another
/// operator's session carries on.
#[tokio::test]
async fn a_removed_or_changed_operator_loses_the_portal() {
    let kept = operator("kept@vendor.example", PASSWORD).await;
    let configured = vec![
        operator("ops@vendor.example", PASSWORD).await,
        operator("other@vendor.example", PASSWORD).await,
        kept.clone(),
    ];
    let mut stack = start_full(
        |_| {},
        |_| {},
        move |config| {
            config.admin.users = configured;
            // Sessions outlive the restart, as in any deployment with a fixed secret.
            config.server.session_secret =
                Some(serde_json::from_value(serde_json::json!("s".repeat(64))).unwrap());
        },
    )
    .await;
    let login_page = format!("{}/admin/login", stack.app_url);
    let admin = format!("{}/admin", stack.app_url);
    let mut browsers = Vec::new();
    for email in [
        "ops@vendor.example",
        "other@vendor.example",
        "kept@vendor.example",
    ] {
        let client = browser();
        let signed_in = submit_form(
            &client,
            &login_page,
            &login_page,
            &[("email", email), ("password", PASSWORD)],
        )
        .await;
        assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            client.get(&admin).send().await.unwrap().status(),
            StatusCode::OK
        );
        browsers.push(client);
    }

    // ops@ is removed; other@ gets a new password; kept@ stays as they were.
    stack.config.admin.users = vec![
        operator("other@vendor.example", "a brand new passphrase").await,
        kept,
    ];
    stack.restart().await;
    for (client, expected) in
        browsers
            .iter()
            .zip([StatusCode::SEE_OTHER, StatusCode::SEE_OTHER, StatusCode::OK])
    {
        let answer = client.get(&admin).send().await.unwrap();
        assert_eq!(answer.status(), expected);
        if expected == StatusCode::SEE_OTHER {
            assert_eq!(answer.headers()["location"], "/admin/login");
            // Ended for good: the session no longer names an operator.
            let again = client.get(&admin).send().await.unwrap();
            assert_eq!(again.status(), StatusCode::SEE_OTHER);
        }
    }
}

/// Staging and production sharing a session secret: a cookie made by one is not a session
/// of the other (cookies ignore ports, so one browser carries it to both here).
#[tokio::test]
async fn a_cookie_from_another_deployment_is_refused() {
    let ops = operator("ops@vendor.example", PASSWORD).await;
    let same = move |config: &mut marketlink_cli::config::Config| {
        config.admin.users = vec![ops.clone()];
        config.server.session_secret =
            Some(serde_json::from_value(serde_json::json!("s".repeat(64))).unwrap());
    };
    let (same_b, same_a) = (same.clone(), same);
    let staging = start_full(|_| {}, |_| {}, same_a).await;
    let production = start_full(|_| {}, |_| {}, same_b).await;
    let client = browser();
    let login_page = format!("{}/admin/login", staging.app_url);
    let signed_in = submit_form(
        &client,
        &login_page,
        &login_page,
        &[("email", "ops@vendor.example"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let staging_admin = format!("{}/admin", staging.app_url);
    assert_eq!(
        client.get(&staging_admin).send().await.unwrap().status(),
        StatusCode::OK
    );
    let elsewhere = client
        .get(format!("{}/admin", production.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::SEE_OTHER);
    assert_eq!(elsewhere.headers()["location"], "/admin/login");
}

/// The Microsoft sign-in callback takes only the `state` this browser's sign-in made, once:
/// a missing, forged or replayed one, or one from another browser, gets a page saying to
/// start again, and claims nothing.
#[tokio::test]
async fn the_sign_in_callback_refuses_a_bad_missing_or_replayed_state() {
    let stack = start_full(|_| {}, |_| {}, |_| {}).await;
    let purchase = stack
        .azure
        .purchase(PurchaseRequest {
            offer_id: "contoso-analytics".into(),
            plan_id: "basic".into(),
            quantity: None,
            buyer_object_id: ALICE.into(),
            subscription_name: None,
            is_test: false,
        })
        .await
        .unwrap();
    let refused = |response: reqwest::Response| async move {
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let page = response.text().await.unwrap();
        assert!(page.contains("could not be completed"), "{page}");
    };
    let with_state = |url: &str, state: Option<&str>| {
        let mut parsed = reqwest::Url::parse(url).unwrap();
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(k, _)| k != "state")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut query = parsed.query_pairs_mut();
        query.clear().extend_pairs(kept);
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        drop(query);
        parsed.to_string()
    };
    for state in [None, Some("forged-state")] {
        let client = browser_trusting(&stack.azure.ca_pem);
        let callback = azure_sign_in_callback_url(&client, &purchase.landing_url, ALICE).await;
        refused(
            client
                .get(with_state(&callback, state))
                .send()
                .await
                .unwrap(),
        )
        .await;
    }
    // The genuine callback works once; opened again, or in another browser, it does not.
    let client = browser_trusting(&stack.azure.ca_pem);
    let callback = azure_sign_in_callback_url(&client, &purchase.landing_url, ALICE).await;
    let stranger = browser_trusting(&stack.azure.ca_pem);
    refused(stranger.get(&callback).send().await.unwrap()).await;
    let first = client.get(&callback).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    assert_eq!(first.headers()["location"], "/signup");
    refused(client.get(&callback).send().await.unwrap()).await;
}
