//! Sessions change hands at sign-in: the CSRF token a page showed before no longer works.

use marketlink_e2e::{browser, csrf, operator, start_full, submit_form};
use reqwest::StatusCode;

const PASSWORD: &str = "operator passphrase 42";

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
