//! Fault switches on the Google sandbox: from the scenario, from Rust and from the fault page.

use marketlink_sandbox::{
    gcp::PurchaseRequest,
    switch::{FaultConfig, FaultKind},
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::harness::*;

fn fault(matching: &str, kind: FaultKind) -> FaultConfig {
    FaultConfig {
        matching: matching.into(),
        kind,
        retry_after_secs: None,
        late_ms: None,
        calls: Some(1),
        start_after_secs: None,
        duration_secs: None,
    }
}

#[tokio::test]
async fn a_fault_answers_in_googles_shape_for_its_calls_only() {
    let t = T::start_with(|c| c.faults = vec![fault(":check", FaultKind::TooManyRequests)]).await;
    let check = "/v1/services/marketlink.example.com:check";
    let (status, body) = t.call("POST", check, Some(json!({}))).await;
    assert_eq!(
        (status, google_status(&body, 429).as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED")
    );
    let (status, _) = t.call("POST", check, Some(json!({}))).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "one call only: the real check runs (and wants an operation)"
    );

    t.sandbox
        .start_fault(fault(":approve", FaultKind::ServerError))
        .unwrap();
    let p = t.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let path = format!("{}/accounts/{}:approve", t.provider(), p.account_id);
    let (status, body) = t.call("POST", &path, Some(json!({}))).await;
    assert_eq!(
        (status, google_status(&body, 500).as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL")
    );
    assert_eq!(
        t.sandbox.account(&p.account_id).unwrap().approvals[0].state,
        marketlink_sandbox::gcp::ApprovalState::Pending,
        "a 5xx changes nothing"
    );
    assert!(
        t.sandbox
            .start_fault(fault(":report", FaultKind::Throttling))
            .is_err(),
        "Google has no ThrottlingException"
    );
}

#[tokio::test]
async fn the_fault_page_starts_lists_and_stops_faults() {
    let t = T::start().await;
    let page = format!("{}/sandbox/gcp/faults", t.base);
    let response = t
        .http
        .post(&page)
        .form(&[("match", "*"), ("kind", "unavailable")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let (status, body) = t
        .call("GET", &format!("{}/entitlements", t.provider()), None)
        .await;
    assert_eq!(
        (status, google_status(&body, 503).as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
    );
    let list: Value = t.get_json(&format!("{page}?format=json")).await;
    assert_eq!(list[0]["caught"], 1, "{list}");
    let response = t.http.post(format!("{page}/stop")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let (status, _) = t
        .call("GET", &format!("{}/entitlements", t.provider()), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let refused = t
        .http
        .post(&page)
        .form(&[("match", "report"), ("kind", "5xx")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::BAD_REQUEST,
        "a match is *, /path or :method"
    );
}
