//! Verified sign-up emails (issue 20, ADR 0021): the vendor's product hears the typed address
//! as unverified, then `user.email_verified` once the mailed link is opened (over a loopback
//! SMTP server) or, without SMTP, once an operator confirms it.

use std::sync::{Arc, Mutex};

use axum::{Router, body::Bytes, http::StatusCode as AxumStatus, routing::post};
use marketlink_core::{Clock, Secret, SystemClock, UserId};
use marketlink_e2e::{
    aws_buyer_signs_up, browser, eventually, operator, operator_signs_in, smtp_sink::SmtpSink,
    start_full, submit_form,
};
use marketlink_engine::{mail::EmailSettings, webhooks::WebhookSettings};
use marketlink_sandbox::aws::OfferKind;
use reqwest::StatusCode;
use serde_json::Value;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OPS: &str = "ops@vendor.example";
const OPS_PASSWORD: &str = "operator passphrase 42";

type Seen = Arc<Mutex<Vec<Value>>>;

/// The vendor's webhook endpoint: keeps every payload.
async fn vendor_endpoint() -> (WebhookSettings, Seen) {
    let seen: Seen = Arc::default();
    let kept = seen.clone();
    let app = Router::new().route(
        "/hooks",
        post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                let payload: Value = serde_json::from_slice(&body).unwrap();
                kept.lock().unwrap().push(payload);
                AxumStatus::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let settings = WebhookSettings {
        url,
        secret: SECRET.into(),
    };
    (settings, seen)
}

/// The data of the first webhook of `kind`, once it has arrived.
async fn webhook(seen: &Seen, kind: &str) -> Value {
    eventually(&format!("a `{kind}` webhook"), || async {
        seen.lock().unwrap().iter().any(|p| p["type"] == kind)
    })
    .await;
    let all = seen.lock().unwrap();
    let found = all.iter().find(|p| p["type"] == kind).unwrap();
    found["data"].clone()
}

async fn page(client: &reqwest::Client, url: &str) -> (StatusCode, String) {
    let response = client.get(url).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_sign_up_is_verified_by_the_link_mailed_to_it() {
    let sink = SmtpSink::start().await;
    let (hooks, seen) = vendor_endpoint().await;
    let smtp_url = sink.url.clone();
    let stack = start_full(
        |_| {},
        |_| {},
        move |config| {
            config.webhooks = Some(hooks);
            config.email = Some(EmailSettings {
                smtp_url: Secret::new(smtp_url),
                from: "Vendor <no-reply@vendor.example>".into(),
            });
        },
    )
    .await;
    let buyer = browser();
    let email = "verify-me@example.com";
    aws_buyer_signs_up(
        &stack,
        &buyer,
        OfferKind::Subscription,
        "111100002222",
        email,
    )
    .await;

    // The vendor hears of the account with the address marked unverified, and how it will be.
    let created = webhook(&seen, "tenant.created").await;
    assert_eq!(created["owner"]["email"], email);
    assert_eq!(created["owner"]["email_verified"], false);
    assert_eq!(created["owner"]["verification"], "link");
    let (_, account) = page(&buyer, &format!("{}/account", stack.app_url)).await;
    assert!(account.contains("not verified"), "{account}");
    assert!(account.contains("Send the link again"), "{account}");

    let first = sink.wait_for(email, 1).await.remove(0);
    assert_eq!(first.from, "no-reply@vendor.example");
    assert!(first.data.contains("Subject: Confirm your email address"));
    assert!(
        first.body().contains("works once, for 24 hours"),
        "{}",
        first.body()
    );
    let link = first.link("/verify-email/").expect("a link in the mail");
    assert!(link.starts_with(&stack.app_url), "{link}");

    // Asking again sends another working link (the first one keeps working too).
    let again = submit_form(
        &buyer,
        &format!("{}/account", stack.app_url),
        &format!("{}/account/verify-email", stack.app_url),
        &[],
    )
    .await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    assert_eq!(again.headers()["location"], "/account?sent=1");
    let second = sink.wait_for(email, 2).await.remove(1);
    let second_link = second.link("/verify-email/").expect("a second link");
    assert_ne!(second_link, link, "every mail has its own token");

    // Anyone holding the link may open it: no session is needed.
    let (status, body) = page(&browser(), &link).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Your email address is verified"), "{body}");
    let verified = webhook(&seen, "user.email_verified").await;
    assert_eq!(verified["email"], email);
    assert_eq!(verified["method"], "link");
    assert!(
        verified["verified_at"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );

    // Used once: refused the second time, with a page that says so.
    let (status, body) = page(&browser(), &link).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(body.contains("used already"), "{body}");
    let (_, account) = page(&buyer, &format!("{}/account", stack.app_url)).await;
    assert!(!account.contains("not verified"), "{account}");

    // The other link still opens, but the vendor is told only once.
    let (status, _) = page(&browser(), &second_link).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let told = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "user.email_verified")
        .count();
    assert_eq!(told, 1);
}

#[tokio::test]
async fn a_mail_the_server_defers_is_retried_and_bad_links_get_a_clear_page() {
    // The mail server is busy at first: the mail is retried by the outbox, not lost, and
    // sign-up did not wait for it.
    let sink = SmtpSink::refusing(1).await;
    let smtp_url = sink.url.clone();
    let stack = start_full(
        |_| {},
        |_| {},
        move |config| {
            config.email = Some(EmailSettings {
                smtp_url: Secret::new(smtp_url),
                from: "no-reply@vendor.example".into(),
            });
        },
    )
    .await;
    let email = "late@example.com";
    aws_buyer_signs_up(
        &stack,
        &browser(),
        OfferKind::Subscription,
        "111100003333",
        email,
    )
    .await;
    let mail = sink.wait_for(email, 1).await.remove(0);
    assert_eq!(sink.refused(), 1, "the first attempt was deferred");
    assert!(mail.link("/verify-email/").is_some());

    let forged = format!("{}/verify-email/not-a-token-we-sent", stack.app_url);
    let (status, body) = page(&browser(), &forged).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("not valid"), "{body}");

    // A link issued a day ago: past its 24 hours.
    let (user, _) = stack
        .store
        .find_user_by_email(email)
        .await
        .unwrap()
        .unwrap();
    let token = "an-old-token-from-yesterday";
    let yesterday = SystemClock.now() - time::Duration::hours(25);
    stack
        .store
        .create_email_verification(
            user.id,
            &marketlink_engine::verification::hash_token(token),
            yesterday + time::Duration::hours(24),
            yesterday,
        )
        .await
        .unwrap();
    let (status, body) = page(
        &browser(),
        &format!("{}/verify-email/{token}", stack.app_url),
    )
    .await;
    assert_eq!(status, StatusCode::GONE);
    assert!(body.contains("expired"), "{body}");
    let user = stack.store.get_user(user.id).await.unwrap();
    assert_eq!(user.email_verified, None, "a refused link verifies nothing");
}

#[tokio::test]
async fn without_smtp_an_operator_confirms_the_address() {
    let (hooks, seen) = vendor_endpoint().await;
    let ops = operator(OPS, OPS_PASSWORD).await;
    let stack = start_full(
        |_| {},
        |_| {},
        move |config| {
            config.webhooks = Some(hooks);
            config.admin.users = vec![ops];
        },
    )
    .await;
    let buyer = browser();
    let email = "confirm-me@example.com";
    aws_buyer_signs_up(
        &stack,
        &buyer,
        OfferKind::Subscription,
        "111100004444",
        email,
    )
    .await;
    let created = webhook(&seen, "tenant.created").await;
    assert_eq!(created["owner"]["email_verified"], false);
    assert_eq!(created["owner"]["verification"], "operator");
    let (_, account) = page(&buyer, &format!("{}/account", stack.app_url)).await;
    assert!(account.contains("not verified"), "{account}");
    assert!(
        !account.contains("Send the link again"),
        "no mail to send: {account}"
    );

    let admin = operator_signs_in(&stack, OPS, OPS_PASSWORD).await;
    let list = format!("{}/admin/verifications", stack.app_url);
    let (_, listed) = page(&admin, &list).await;
    assert!(listed.contains(email), "{listed}");
    let (user, _) = stack
        .store
        .find_user_by_email(email)
        .await
        .unwrap()
        .unwrap();
    let confirm = format!("{}/admin/verifications/{}/confirm", stack.app_url, user.id);
    let confirmed = submit_form(&admin, &list, &confirm, &[]).await;
    assert_eq!(confirmed.status(), StatusCode::SEE_OTHER);

    let verified = webhook(&seen, "user.email_verified").await;
    assert_eq!(verified["email"], email);
    assert_eq!(verified["method"], "operator");
    let audit = stack
        .store
        .audit_log(Some(&format!("admin:{OPS}")), 10)
        .await
        .unwrap();
    assert!(
        audit.iter().any(|e| e.action == "user.email_confirmed"
            && e.target.as_deref() == Some(user.id.to_string().as_str())),
        "{audit:?}"
    );
    let (_, listed) = page(&admin, &list).await;
    assert!(
        !listed.contains(email),
        "confirmed addresses leave the list"
    );
    let (_, account) = page(&buyer, &format!("{}/account", stack.app_url)).await;
    assert!(!account.contains("not verified"), "{account}");

    // A second confirmation, or one without the form's token, changes nothing.
    let twice = submit_form(&admin, &list, &confirm, &[]).await;
    assert_eq!(twice.status(), StatusCode::CONFLICT);
    let forged = admin
        .post(&confirm)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let unknown = format!(
        "{}/admin/verifications/{}/confirm",
        stack.app_url,
        UserId::new()
    );
    assert_eq!(
        submit_form(&admin, &list, &unknown, &[]).await.status(),
        StatusCode::NOT_FOUND
    );
}
