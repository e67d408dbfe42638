//! Sessions change hands at sign-in: the CSRF token a page showed before no longer works.

use marketlink_e2e::{browser, csrf, start_full, submit_form};
use reqwest::StatusCode;

const PASSWORD: &str = "operator passphrase 42";

#[tokio::test]
async fn the_csrf_token_from_before_sign_in_is_refused_after_it() {
    let hash = marketlink_web::password::hash(PASSWORD.into())
        .await
        .unwrap();
    let stack = start_full(
        |_| {},
        |_| {},
        move |config| {
            config.admin.users = vec![marketlink_web::admin::AdminUser {
                email: "ops@vendor.example".into(),
                password_hash: hash,
            }];
        },
    )
    .await;
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
