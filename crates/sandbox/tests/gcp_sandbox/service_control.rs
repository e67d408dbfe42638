//! Service Control check/report: consumers, operation-id de-duplication, report errors,
//! injected check errors.

use marketlink_core::clock::Clock;
use marketlink_sandbox::gcp::{CancellationPolicy, InjectedCheckError, PurchaseRequest};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};

use super::harness::*;

const CHECK: &str = "/v1/services/marketlink.example.com:check";
const REPORT: &str = "/v1/services/marketlink.example.com:report";
const METRIC: &str = "marketlink.example.com/requests";

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// An hourly operation ending at `end`.
fn operation(id: &str, consumer: &str, end: OffsetDateTime, metric: &str, value: &str) -> Value {
    json!({
        "operationId": id,
        "operationName": "Hourly Usage Report",
        "consumerId": consumer,
        "startTime": rfc3339(end - Duration::hours(1)),
        "endTime": rfc3339(end),
        "metricValueSets": [{"metricName": metric, "metricValues": [{"int64Value": value}]}],
        "userLabels": {"cloudmarketplace.googleapis.com/resource_name": "r1"},
    })
}

async fn active_consumer(t: &T) -> (String, String) {
    let p = t.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    t.activate(&p.account_id, &p.entitlement_id).await;
    (p.usage_reporting_id.unwrap(), p.entitlement_id)
}

#[tokio::test]
async fn check_then_report_counts_once_per_operation_id() {
    let t = T::start().await;
    let (consumer, entitlement) = active_consumer(&t).await;
    let now = t.clock.now();
    let op = operation("op-1", &consumer, now, METRIC, "150");
    let (status, body) = t.call("POST", CHECK, Some(json!({"operation": op}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["operationId"], "op-1");
    assert!(body.get("checkErrors").is_none(), "{body}");
    for _ in 0..2 {
        let (status, body) = t
            .call("POST", REPORT, Some(json!({"operations": [op]})))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.get("reportErrors").is_none(), "{body}");
    }
    let ledger = t.sandbox.usage_ledger();
    assert_eq!(ledger.len(), 1, "a resent operation id counts once");
    assert_eq!((ledger[0].value, ledger[0].metric.as_str()), (150, METRIC));
    assert_eq!(ledger[0].entitlement_id, entitlement);
    assert_eq!(ledger[0].window_start.minute(), 0);

    let changed = operation("op-1", &consumer, now, METRIC, "151");
    let (_, body) = t
        .call("POST", REPORT, Some(json!({"operations": [changed]})))
        .await;
    assert_eq!(body["reportErrors"][0]["operationId"], "op-1");
    assert_eq!(body["reportErrors"][0]["status"]["code"], 6);
    assert_eq!(t.sandbox.usage_ledger().len(), 1);
}

#[tokio::test]
async fn check_errors_for_inactive_unknown_and_injected() {
    let t = T::start().await;
    let p = t.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let consumer = p.usage_reporting_id.clone().unwrap();
    let now = t.clock.now();
    let check = |consumer: &str| json!({"operation": operation("c", consumer, now, METRIC, "1")});
    let code = |body: &Value| body["checkErrors"][0]["code"].as_str().map(str::to_owned);
    let (_, body) = t.call("POST", CHECK, Some(check(&consumer))).await;
    assert_eq!(code(&body).as_deref(), Some("SERVICE_NOT_ACTIVATED"));
    let (_, body) = t.call("POST", CHECK, Some(check("project_number:1"))).await;
    assert_eq!(code(&body).as_deref(), Some("CONSUMER_INVALID"));
    t.activate(&p.account_id, &p.entitlement_id).await;
    let bare = consumer.trim_start_matches("project_number:");
    let (_, body) = t.call("POST", CHECK, Some(check(bare))).await;
    assert_eq!(
        code(&body),
        None,
        "the id without its prefix is the same consumer: {body}"
    );
    t.sandbox.inject_check_error(InjectedCheckError {
        consumer_id: Some(consumer.clone()),
        code: "BILLING_DISABLED".into(),
        detail: "billing account closed".into(),
    });
    let (_, body) = t.call("POST", CHECK, Some(check(&consumer))).await;
    assert_eq!(code(&body).as_deref(), Some("BILLING_DISABLED"));
    t.sandbox.clear_check_errors();
    let (_, body) = t.call("POST", CHECK, Some(check(&consumer))).await;
    assert_eq!(code(&body), None);
}

#[tokio::test]
async fn report_errors_name_each_bad_operation_and_keep_the_good_ones() {
    let t = T::start().await;
    let (consumer, _) = active_consumer(&t).await;
    let now = t.clock.now();
    let operations = [
        operation("good", &consumer, now, METRIC, "7"),
        operation(
            "metric",
            &consumer,
            now,
            "marketlink.example.com/unknown",
            "1",
        ),
        operation("old", &consumer, now - Duration::hours(3), METRIC, "1"),
        operation("future", &consumer, now + Duration::hours(2), METRIC, "1"),
        operation("who", "project_number:42", now, METRIC, "1"),
        operation("negative", &consumer, now, METRIC, "-5"),
    ];
    let (status, body) = t
        .call("POST", REPORT, Some(json!({"operations": operations})))
        .await;
    assert_eq!(status, StatusCode::OK, "partial failures are a 200");
    let failed: Vec<&str> = body["reportErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operationId"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["metric", "old", "future", "who", "negative"]);
    let ledger = t.sandbox.usage_ledger();
    assert_eq!(
        ledger
            .iter()
            .map(|r| r.operation_id.as_str())
            .collect::<Vec<_>>(),
        ["good"]
    );

    let (status, body) = t
        .call(
            "POST",
            "/v1/services/other.example.com:report",
            Some(json!({"operations": [operations[0]]})),
        )
        .await;
    assert_eq!(
        (status, google_status(&body, 403).as_str()),
        (StatusCode::FORBIDDEN, "PERMISSION_DENIED")
    );
    let (status, body) = t
        .call("POST", REPORT, Some(json!({"operations": []})))
        .await;
    assert_eq!(
        (status, google_status(&body, 400).as_str()),
        (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT")
    );
}

#[tokio::test]
async fn after_cancellation_only_earlier_usage_is_accepted() {
    let t = T::start().await;
    let (consumer, entitlement) = active_consumer(&t).await;
    let before = t.clock.now();
    t.clock.advance(Duration::minutes(10));
    t.sandbox
        .cancel(&entitlement, CancellationPolicy::Immediate)
        .unwrap();
    t.clock.advance(Duration::minutes(10));
    let late_but_true = operation("before", &consumer, before, METRIC, "3");
    let after = operation("after", &consumer, t.clock.now(), METRIC, "3");
    let (_, body) = t
        .call(
            "POST",
            REPORT,
            Some(json!({"operations": [late_but_true, after]})),
        )
        .await;
    assert_eq!(body["reportErrors"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["reportErrors"][0]["operationId"], "after");
    assert_eq!(t.sandbox.usage_ledger().len(), 1);
}
