//! The session cookie when `secure_cookies` is on; plain HTTP is enough to see it, so this
//! check needs no browser (the AWS journey checks the cookie Chromium keeps).

use marketlink_e2e::start_full;

/// With `secure_cookies`, the session cookie is `__Host-` and Secure (and still HttpOnly,
/// SameSite=Lax, Path=/);
/// the cookie jar is encrypted, so a tampered value gives a fresh session, not an error.
#[tokio::test]
async fn session_cookie_is_secure_when_configured() {
    let stack = start_full(
        |_| {},
        |_| {},
        |config| config.server.secure_cookies = Some(true),
    )
    .await;
    let response = reqwest::Client::new()
        .get(format!("{}/signin", stack.app_url))
        .send()
        .await
        .expect("sign-in page");
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("__Host-marketlink_session="))
        .expect("a session cookie")
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    let html = response.text().await.expect("page");
    let csrf = marketlink_e2e::csrf(&html);
    let (value, _) = cookie
        .trim_start_matches("__Host-marketlink_session=")
        .split_once(';')
        .expect("cookie attributes");
    assert!(!value.contains(&csrf), "the CSRF token is not readable");
    // A flipped byte: the form's token no longer matches any session, so it is refused.
    let mut tampered = value.to_owned();
    let last = tampered.pop().map(|c| if c == 'A' { 'B' } else { 'A' });
    tampered.extend(last);
    let refused = reqwest::Client::new()
        .post(format!("{}/signin", stack.app_url))
        .header("cookie", format!("__Host-marketlink_session={tampered}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "x@example.com"),
            ("password", "x"),
        ])
        .send()
        .await
        .expect("sign-in");
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
}
