//! Faults without Rust: the scenario's `[[faults]]` and the fault page (`/aws/faults`).

use aws_sdk_marketplacemetering::operation::resolve_customer::ResolveCustomerError;
use marketlink_core::clock::ManualClock;
use marketlink_sandbox::aws::{AwsSandboxConfig, OfferKind};
use serde_json::Value;
use time::Duration;

use super::common::*;

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

async fn faults_json(h: &Harness) -> Vec<Value> {
    let (status, body) = raw_get(&format!("{}/aws/faults?format=json", h.url)).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn scenario_faults_throttle_a_number_of_calls_and_open_a_window() {
    let config = AwsSandboxConfig::from_toml_str(
        r#"
        [[faults]]
        match = "ResolveCustomer"
        kind = "throttling"
        calls = 2
        [[faults]]
        match = "sns-certificate"
        kind = "unavailable"
        start_after_secs = 60
        duration_secs = 90
        "#,
    )
    .unwrap();
    let h = start_with(config, ManualClock::new(wall_now())).await;
    let client = metering(&h.url, "sandbox-secret");
    let token =
        h.sb.issue_registration_token(CLASSIC, OfferKind::Subscription, BUYER)
            .unwrap();
    for _ in 0..2 {
        let err = client
            .resolve_customer()
            .registration_token(&token)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(
            matches!(err, ResolveCustomerError::ThrottlingException(_)),
            "{err:?}"
        );
    }
    client
        .resolve_customer()
        .registration_token(&token)
        .send()
        .await
        .expect("the third call goes through");

    // The certificate's outage starts a minute in and lasts ninety seconds, by the sandbox clock.
    let cert = format!("{}/SimpleNotificationService-sandbox.pem", h.url);
    assert_eq!(raw_get(&cert).await.0, 200);
    h.clock.advance(Duration::seconds(60));
    assert_eq!(raw_get(&cert).await.0, 503);
    h.clock.advance(Duration::seconds(90));
    assert_eq!(raw_get(&cert).await.0, 200);

    let faults = faults_json(&h).await;
    let seen: Vec<_> = faults
        .iter()
        .map(|f| {
            (
                f["match"].as_str().unwrap(),
                f["status"].as_str().unwrap(),
                f["caught"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [("ResolveCustomer", "ended", 2), ("SigningCert", "ended", 1)]
    );
}

#[test]
fn scenario_faults_are_checked() {
    let err = AwsSandboxConfig::from_toml_str(
        "[[faults]]\nmatch = \"BatchMeterUsage\"\nkind = \"429\"\nretry_after_secs = 5",
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("ThrottlingException"),
        "{err:#}"
    );
    let err = AwsSandboxConfig::from_toml_str("[[faults]]\nmatch = \"Nope\"\nkind = \"5xx\"")
        .unwrap_err();
    assert!(format!("{err:#}").contains("faults[0]"), "{err:#}");
    let err =
        AwsSandboxConfig::from_toml_str("[[faults]]\nmatch = \"*\"\nkind = \"down\"").unwrap_err();
    assert!(format!("{err:#}").contains("unknown variant"), "{err:#}");
}

#[tokio::test]
async fn the_fault_page_starts_lists_and_stops_faults() {
    let h = start().await;
    let cert = format!("{}/SimpleNotificationService-sandbox.pem", h.url);
    let (status, body) = raw_post(
        &h.url,
        "/aws/faults",
        &[FORM],
        b"match=sns-certificate&kind=reset&calls=&duration_secs=",
    )
    .await;
    assert_eq!(status, 303, "{body}");
    let (status, page) = raw_get(&format!("{}/aws/faults", h.url)).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<code>SigningCert</code>") && page.contains("in force"),
        "{page}"
    );

    // A reset: the connection closes without an answer.
    let client = reqwest::Client::new();
    assert!(client.get(&cert).send().await.is_err());
    let faults = faults_json(&h).await;
    assert_eq!(faults[0]["caught"], 1);

    let (status, _) = raw_post(&h.url, "/aws/faults/1/stop", &[FORM], b"").await;
    assert_eq!(status, 303);
    assert_eq!(raw_get(&cert).await.0, 200);
    assert_eq!(faults_json(&h).await[0]["status"], "ended");

    // A fault the form describes wrongly is refused, saying why.
    let (status, body) = raw_post(
        &h.url,
        "/aws/faults",
        &[FORM],
        b"match=BatchMeterUsage&kind=late",
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("late_ms is needed"), "{body}");
    let (status, _) = raw_post(&h.url, "/aws/faults/9/stop", &[FORM], b"").await;
    assert_eq!(status, 404);

    // Stop all ends a fault on every call (`*`), which the page itself never falls under.
    raw_post(&h.url, "/aws/faults", &[FORM], b"match=*&kind=unavailable").await;
    assert_eq!(raw_get(&cert).await.0, 503);
    let (status, _) = raw_post(&h.url, "/aws/faults/stop", &[FORM], b"").await;
    assert_eq!(status, 303);
    assert_eq!(raw_get(&cert).await.0, 200);
}
