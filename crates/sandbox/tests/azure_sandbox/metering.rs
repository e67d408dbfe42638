//! Metering API: usage events, batches and the usage listing.

use marketlink_core::clock::Clock;
use marketlink_sandbox::azure::MarketplaceAction;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use super::harness::*;

#[tokio::test]
async fn metering_usage_events_batches_and_listing() {
    let t = T::start().await;
    let token = t.token().await;
    let tok = Some(token.as_str());
    let id = t.subscribed(&token, "basic", None).await;
    let (pending, _) = t.buy("basic", None, 0).await;
    let now = t.clock.now();
    let at = |minutes_ago: i64| {
        (now - time::Duration::minutes(minutes_ago))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let event = |resource: Uuid, dimension: &str, quantity: f64, when: String, plan: &str| json!({"resourceId": resource, "quantity": quantity, "dimension": dimension, "effectiveStartTime": when, "planId": plan});
    let post = |body: Value| {
        t.call(
            Method::POST,
            "/usageEvent",
            "/usageEvent",
            tok,
            Some(body),
            &[],
        )
    };

    // Accepted, then a duplicate in the same hour with the accepted message.
    let hour_start = now
        .replace_minute(0)
        .unwrap()
        .replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap();
    let in_hour = |m: i64| {
        (hour_start + time::Duration::minutes(m))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let prev_hour = |m: i64| {
        (hour_start - time::Duration::minutes(60 - m))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let (status, _, accepted) = post(event(id, "api_calls", 12.5, prev_hour(5), "basic")).await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["status"], "Accepted");
    assert_eq!(accepted["quantity"], 12.5);
    let (status, headers, dup) = post(event(id, "api_calls", 3.0, prev_hour(40), "basic")).await;
    assert_eq!(status, 409);
    assert_eq!(headers["x-ms-error-response"], "true");
    assert_eq!(dup["code"], "Conflict");
    assert_eq!(
        dup["additionalInfo"]["acceptedMessage"]["usageEventId"],
        accepted["usageEventId"]
    );
    assert_eq!(dup["additionalInfo"]["acceptedMessage"]["quantity"], 12.5);
    // 400s: expired (> 24 h), unknown dimension, wrong plan, zero quantity, pending subscription,
    // missing field, unknown resource, future.
    for (body, code) in [
        (event(id, "api_calls", 1.0, at(25 * 60), "basic"), "Expired"),
        (
            event(id, "storage_gb", 1.0, at(1), "basic"),
            "InvalidDimension",
        ),
        (event(id, "api_calls", 1.0, at(1), "pro"), "BadArgument"),
        (
            event(id, "api_calls", 0.0, at(1), "basic"),
            "InvalidQuantity",
        ),
        (
            event(pending, "api_calls", 1.0, at(1), "basic"),
            "ResourceNotActive",
        ),
        (
            json!({"quantity": 1, "dimension": "api_calls", "effectiveStartTime": at(1), "planId": "basic"}),
            "BadArgument",
        ),
        (
            event(Uuid::new_v4(), "api_calls", 1.0, at(1), "basic"),
            "ResourceNotFound",
        ),
        (
            event(id, "api_calls", 1.0, at(-120), "basic"),
            "BadArgument",
        ),
    ] {
        let (status, _, body) = post(body).await;
        assert_eq!(status, 400, "{code}: {body}");
        assert_eq!(body["code"], "BadArgument");
        assert_eq!(body["details"][0]["code"], code);
    }
    assert_eq!(
        t.call(
            Method::POST,
            "/usageEvent",
            "/usageEvent",
            None,
            Some(event(id, "api_calls", 1.0, at(1), "basic")),
            &[]
        )
        .await
        .0,
        403
    );
    let other = &t.sandbox.config().other_apps[0];
    let other_token = t
        .token_for(
            &other.client_id,
            other.client_secret.expose(),
            &other.tenant_id,
        )
        .await;
    assert_eq!(
        t.call(
            Method::POST,
            "/usageEvent",
            "/usageEvent",
            Some(&other_token),
            Some(event(id, "api_calls", 1.0, at(1), "basic")),
            &[]
        )
        .await
        .0,
        403
    );

    // Batch with every per-item status.
    let batch = json!({"request": [
        event(id, "api_calls", 4.0, in_hour(0), "basic"),
        event(id, "api_calls", 4.0, in_hour(0), "basic"),
        event(id, "api_calls", 1.0, at(30 * 60), "basic"),
        event(Uuid::new_v4(), "api_calls", 1.0, at(1), "basic"),
        event(id, "storage_gb", 1.0, at(1), "basic"),
        event(id, "api_calls", -2.0, at(1), "basic"),
        {"resourceId": id, "quantity": 1, "dimension": "api_calls", "planId": "basic"},
        event(pending, "api_calls", 1.0, at(1), "basic"),
    ]});
    let (status, _, body) = t
        .call(
            Method::POST,
            "/batchUsageEvent",
            "/batchUsageEvent",
            tok,
            Some(batch),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 8);
    let statuses: Vec<&str> = body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "Accepted",
            "Duplicate",
            "Expired",
            "ResourceNotFound",
            "InvalidDimension",
            "InvalidQuantity",
            "BadArgument",
            "ResourceNotActive"
        ]
    );
    assert_eq!(body["result"][1]["error"]["code"], "Conflict");
    assert_eq!(
        body["result"][1]["error"]["additionalInfo"]["acceptedMessage"]["usageEventId"],
        body["result"][0]["usageEventId"]
    );
    // Batch bounds.
    let too_many: Vec<Value> = (0..26)
        .map(|_| event(id, "api_calls", 1.0, at(1), "basic"))
        .collect();
    assert_eq!(
        t.call(
            Method::POST,
            "/batchUsageEvent",
            "/batchUsageEvent",
            tok,
            Some(json!({"request": too_many})),
            &[]
        )
        .await
        .0,
        400
    );
    assert_eq!(
        t.call(
            Method::POST,
            "/batchUsageEvent",
            "/batchUsageEvent",
            tok,
            Some(json!({"request": []})),
            &[]
        )
        .await
        .0,
        400
    );
    assert_eq!(
        t.call(
            Method::POST,
            "/batchUsageEvent",
            "/batchUsageEvent",
            None,
            Some(json!({"request": []})),
            &[]
        )
        .await
        .0,
        403
    );

    // Usage after a cancellation, for the time before it, is still accepted.
    t.sandbox
        .marketplace_action(id, MarketplaceAction::Unsubscribe)
        .await
        .unwrap();
    let (status, _, _) = post(event(id, "api_calls", 2.0, at(3 * 60), "basic")).await;
    assert_eq!(status, 200);

    // Listing.
    let start = (now - time::Duration::days(2)).date().to_string();
    let (status, _, rows) = t
        .call(
            Method::GET,
            &format!("/usageEvents?usageStartDate={start}"),
            "/usageEvents",
            tok,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(rows.as_array().unwrap().len(), 3);
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["usageResourceId"] == json!(id) && r["offerId"] == "contoso-analytics")
    );
    let (status, _, rows) = t
        .call(
            Method::GET,
            &format!("/usageEvents?usageStartDate={start}&dimension=other"),
            "/usageEvents",
            tok,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(rows, json!([]));
    assert_eq!(
        t.call(Method::GET, "/usageEvents", "/usageEvents", tok, None, &[])
            .await
            .0,
        400
    );
    assert_eq!(
        t.call(
            Method::GET,
            "/usageEvents?usageStartDate=yesterday",
            "/usageEvents",
            tok,
            None,
            &[]
        )
        .await
        .0,
        400
    );
    assert_eq!(t.sandbox.usage_events().await.len(), 3);
    t.sandbox.shutdown().await;
}
