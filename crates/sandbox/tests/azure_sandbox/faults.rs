//! Faults without Rust: the scenario's `[[faults]]` and the fault page (`/sandbox/faults`).

use marketlink_sandbox::azure::AzureSandboxConfig;
use serde_json::Value;

use super::harness::*;

impl T {
    async fn faults_json(&self) -> Vec<Value> {
        let r = self
            .http
            .get(self.url("/sandbox/faults?format=json"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn jwks_status(&self) -> u16 {
        let tenant = &self.sandbox.config().publisher_tenant_id;
        let url = self.url(&format!("/{tenant}/discovery/v2.0/keys"));
        self.http.get(url).send().await.unwrap().status().as_u16()
    }

    /// List Subscriptions with a publisher token: status and `Retry-After`.
    async fn list_subscriptions(&self, token: &str) -> (u16, Option<String>) {
        let r = self
            .http
            .get(self.url(&format!("/api/saas/subscriptions?{API}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let retry_after = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (r.status().as_u16(), retry_after)
    }
}

#[tokio::test]
async fn scenario_faults_take_down_the_jwks_and_throttle_with_retry_after() {
    let scenario = AzureSandboxConfig::from_toml_str(
        r#"
        [[faults]]
        match = "jwks"
        kind = "unavailable"
        [[faults]]
        match = "/api/saas/subscriptions"
        kind = "429"
        retry_after_secs = 7
        calls = 1
        "#,
    )
    .unwrap();
    let t = T::start_with(|c| c.faults = scenario.faults).await;
    assert_eq!(t.jwks_status().await, 503);
    let token = t.token().await;
    assert_eq!(t.list_subscriptions(&token).await, (429, Some("7".into())));
    assert_eq!(t.list_subscriptions(&token).await.0, 200, "one call only");

    let faults = t.faults_json().await;
    let seen: Vec<_> = faults
        .iter()
        .map(|f| (f["status"].as_str().unwrap(), f["caught"].as_u64().unwrap()))
        .collect();
    assert_eq!(seen, [("in force", 1), ("ended", 1)]);
    let r = t
        .http
        .post(t.url("/sandbox/faults/1/stop"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(t.jwks_status().await, 200);
}

#[test]
fn scenario_faults_are_checked() {
    let err = AzureSandboxConfig::from_toml_str(
        "[[faults]]\nmatch = \"/api/usageEvent\"\nkind = \"throttling\"",
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("kind = \"429\""), "{err:#}");
    let err = AzureSandboxConfig::from_toml_str(
        "[[faults]]\nmatch = \"/api/usageEvent\"\nkind = \"5xx\"\nwhen = 3",
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
}

#[tokio::test]
async fn the_fault_page_starts_lists_and_stops_faults() {
    let t = T::start().await;
    let token = t.token().await;
    let start = |form: &'static [(&'static str, &'static str)]| {
        t.http.post(t.url("/sandbox/faults")).form(form).send()
    };
    let r = start(&[
        ("match", "/api/saas/subscriptions"),
        ("kind", "5xx"),
        ("calls", "2"),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    for _ in 0..2 {
        assert_eq!(t.list_subscriptions(&token).await.0, 500);
    }
    assert_eq!(t.list_subscriptions(&token).await.0, 200);
    let page = t.http.get(t.url("/sandbox/faults")).send().await.unwrap();
    let page = page.text().await.unwrap();
    assert!(page.contains("<td class=caught>2</td>"), "{page}");

    // Everything down, yet the fault page still answers: it is how the fault is stopped.
    start(&[("match", "*"), ("kind", "unavailable")])
        .await
        .unwrap();
    assert_eq!(t.jwks_status().await, 503);
    let r = t
        .http
        .post(t.url("/sandbox/faults/stop"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(t.jwks_status().await, 200);

    let r = start(&[("match", "/api/usageEvent"), ("kind", "429")])
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("retry_after_secs is needed")
    );
}
