//! Sessions: they change hands at sign-in (a CSRF token or a session id from before no longer
//! works), end on every device at sign-out, end when their operator leaves, belong to one
//! deployment, and a marketplace sign-in completes only with its own `state`, once.

use marketlink_e2e::{
    Stack, aws_buyer_signs_up, azure_sign_in_callback_url, browser, browser_trusting,
    browser_with_copy_of, browser_with_jar, csrf, operator, start_full, submit_form,
};
use marketlink_sandbox::{aws::OfferKind, azure::PurchaseRequest};
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

/// Where `client` is sent when it opens `page`: `None` when the page opens (200).
async fn sent_to(client: &reqwest::Client, page: &str) -> Option<String> {
    let answer = client.get(page).send().await.unwrap();
    match answer.status() {
        StatusCode::OK => None,
        StatusCode::SEE_OTHER => Some(answer.headers()["location"].to_str().unwrap().to_owned()),
        other => panic!("{page} answered {other}"),
    }
}

/// A buyer signed up (and so signed in) as `email`, in a browser whose cookies can be copied.
async fn signed_up_buyer(
    stack: &Stack,
    email: &str,
    account: &str,
) -> (reqwest::Client, std::sync::Arc<reqwest::cookie::Jar>) {
    let (client, jar) = browser_with_jar();
    aws_buyer_signs_up(stack, &client, OfferKind::Subscription, account, email).await;
    (client, jar)
}

/// Signing out ends the session itself, not only this browser's cookie: the same cookie on
/// another device (or in a thief's hands) is signed out too.
#[tokio::test]
async fn signing_out_ends_the_session_on_every_device() {
    let stack = start_full(|_| {}, |_| {}, |_| {}).await;
    let account = format!("{}/account", stack.app_url);
    let (laptop, jar) = signed_up_buyer(&stack, "buyer@example.com", "111122220001").await;
    let copy = browser_with_copy_of(&jar, &stack.app_url);
    assert_eq!(sent_to(&laptop, &account).await, None);
    assert_eq!(
        sent_to(&copy, &account).await,
        None,
        "the copy is signed in"
    );

    let out = submit_form(
        &laptop,
        &account,
        &format!("{}/signout", stack.app_url),
        &[],
    )
    .await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(out.headers()["location"], "/signin");
    assert_eq!(sent_to(&laptop, &account).await.as_deref(), Some("/signin"));
    assert_eq!(
        sent_to(&copy, &account).await.as_deref(),
        Some("/signin"),
        "the copied cookie is signed out too"
    );
}

/// "Sign out everywhere" on one device ends the user's sessions on all of them, each signed
/// in on its own; another user's session carries on.
#[tokio::test]
async fn sign_out_everywhere_ends_every_session_of_the_user() {
    let stack = start_full(|_| {}, |_| {}, |_| {}).await;
    let account = format!("{}/account", stack.app_url);
    let signin = format!("{}/signin", stack.app_url);
    let (laptop, _) = signed_up_buyer(&stack, "buyer@example.com", "111122220002").await;
    let (other_user, _) = signed_up_buyer(&stack, "other@example.com", "111122220003").await;
    let phone = browser();
    let signed_in = submit_form(
        &phone,
        &signin,
        &signin,
        &[
            ("email", "buyer@example.com"),
            ("password", "correct-horse-battery"),
        ],
    )
    .await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    for client in [&laptop, &phone, &other_user] {
        assert_eq!(sent_to(client, &account).await, None);
    }

    let page = laptop
        .get(&account)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Sign out everywhere"), "{page}");
    let everywhere = format!("{}/signout/everywhere", stack.app_url);
    // Like every form, it takes this session's CSRF token only.
    let forged = laptop
        .post(&everywhere)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(sent_to(&phone, &account).await, None);

    let out = submit_form(&laptop, &account, &everywhere, &[]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(out.headers()["location"], "/signin");
    assert_eq!(sent_to(&laptop, &account).await.as_deref(), Some("/signin"));
    assert_eq!(
        sent_to(&phone, &account).await.as_deref(),
        Some("/signin"),
        "the other device is signed out"
    );
    assert_eq!(
        sent_to(&other_user, &account).await,
        None,
        "not another user"
    );
}

/// An operator's logout ends their session wherever a copy of its cookie is.
#[tokio::test]
async fn admin_logout_ends_a_copied_operator_cookie() {
    let ops = operator("ops@vendor.example", PASSWORD).await;
    let stack = start_full(|_| {}, |_| {}, move |config| config.admin.users = vec![ops]).await;
    let login = format!("{}/admin/login", stack.app_url);
    let admin = format!("{}/admin", stack.app_url);
    let (laptop, jar) = browser_with_jar();
    let signed_in = submit_form(
        &laptop,
        &login,
        &login,
        &[("email", "ops@vendor.example"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let copy = browser_with_copy_of(&jar, &stack.app_url);
    assert_eq!(
        sent_to(&copy, &admin).await,
        None,
        "the copy opens the portal"
    );

    let out = submit_form(
        &laptop,
        &admin,
        &format!("{}/admin/logout", stack.app_url),
        &[],
    )
    .await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        sent_to(&copy, &admin).await.as_deref(),
        Some("/admin/login"),
        "the copied cookie is signed out too"
    );
}

/// Session fixation: a cookie someone copied (or planted) before sign-in grants nothing
/// after it, for buyers and operators alike. The session id changes at sign-in.
#[tokio::test]
async fn the_session_id_rotates_at_sign_in() {
    let ops = operator("ops@vendor.example", PASSWORD).await;
    let stack = start_full(|_| {}, |_| {}, move |config| config.admin.users = vec![ops]).await;
    signed_up_buyer(&stack, "buyer@example.com", "111122220004").await;
    let pages = [
        (
            "/signin",
            "/account",
            "/signin",
            [
                ("email", "buyer@example.com"),
                ("password", "correct-horse-battery"),
            ],
        ),
        (
            "/admin/login",
            "/admin",
            "/admin/login",
            [("email", "ops@vendor.example"), ("password", PASSWORD)],
        ),
    ];
    for (form, inside, sign_in_page, fields) in pages {
        let (victim, jar) = browser_with_jar();
        let form = format!("{}{form}", stack.app_url);
        let html = victim
            .get(&form)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let before = browser_with_copy_of(&jar, &stack.app_url);
        let signed_in = victim
            .post(&form)
            .form(&[("csrf", csrf(&html).as_str()), fields[0], fields[1]])
            .send()
            .await
            .unwrap();
        assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
        let inside = format!("{}{inside}", stack.app_url);
        assert_eq!(sent_to(&victim, &inside).await, None);
        assert_eq!(
            sent_to(&before, &inside).await.as_deref(),
            Some(sign_in_page),
            "the cookie from before sign-in opens nothing"
        );
    }
}

/// A sign-in whose new session the database refuses to keep is a 503 with `Retry-After`, not
/// a page that claims success: the browser is not signed in, and can sign in once the
/// database takes writes again.
#[tokio::test]
async fn a_sign_in_whose_session_cannot_be_kept_is_refused_with_a_503() {
    use sqlx::{Connection, Executor};
    let ops = operator("ops@vendor.example", PASSWORD).await;
    let stack = start_full(|_| {}, |_| {}, move |config| config.admin.users = vec![ops]).await;
    let login = format!("{}/admin/login", stack.app_url);
    let admin = format!("{}/admin", stack.app_url);
    let client = browser();
    let html = client
        .get(&login)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut db = sqlx::SqliteConnection::connect(&stack.config.database.url)
        .await
        .unwrap();
    db.execute(
        "CREATE TRIGGER no_new_sessions BEFORE INSERT ON web_sessions \
         BEGIN SELECT RAISE(ABORT, 'no new sessions'); END",
    )
    .await
    .unwrap();
    let fields = [
        ("csrf", csrf(&html)),
        ("email", "ops@vendor.example".to_owned()),
        ("password", PASSWORD.to_owned()),
    ];
    let refused = client.post(&login).form(&fields).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(
        refused
            .headers()
            .get_all("set-cookie")
            .iter()
            .next()
            .is_none(),
        "no cookie for a session that was not kept"
    );
    assert_eq!(
        sent_to(&client, &admin).await.as_deref(),
        Some("/admin/login")
    );

    db.execute("DROP TRIGGER no_new_sessions").await.unwrap();
    let signed_in = client.post(&login).form(&fields).send().await.unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(sent_to(&client, &admin).await, None);
}
