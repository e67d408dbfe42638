//! Security headers on what the server answers: pages, the API, the stylesheet; HSTS only
//! when the public URL is https.

use marketlink_e2e::{browser, start, start_full};

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let stack = start(|_| {}).await;
    let client = browser();
    for path in [
        "/signin",
        "/admin/login",
        "/api/v1/entitlements/check",
        "/nope",
    ] {
        let response = client
            .get(format!("{}{path}", stack.app_url))
            .send()
            .await
            .unwrap();
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("script-src"), "no script is allowed: {csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        assert!(
            headers.get("strict-transport-security").is_none(),
            "no HSTS over http"
        );
    }
    let css = client
        .get(format!("{}/static/style.css", stack.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(css.headers()["cache-control"], "public, max-age=3600");
}

#[tokio::test]
async fn https_deployments_send_hsts() {
    let stack = start_full(
        |_| {},
        |_| {},
        |config| config.server.public_url = "https://billing.example".into(),
    )
    .await;
    let response = browser()
        .get(format!("{}/signin", stack.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
}
