//! The Procurement API: the entitlement state machine driven from both sides, the messages each
//! step publishes, listing with filters, and Google's errors.

use marketlink_core::clock::Clock;
use marketlink_sandbox::gcp::{CancellationPolicy, PrivateOffer, PurchaseRequest};
use reqwest::StatusCode;
use serde_json::json;

use super::harness::*;

#[tokio::test]
async fn purchase_then_approvals_activate_the_entitlement() {
    let t = T::start().await;
    let p = t.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let path = format!("{}/entitlements/{}", t.provider(), p.entitlement_id);
    let (status, e) = t.call("GET", &path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(e["state"], "ENTITLEMENT_ACTIVATION_REQUESTED");
    assert_eq!(e["plan"], "basic");
    assert_eq!(
        e["account"],
        format!("providers/DEMO-marketlink/accounts/{}", p.account_id)
    );
    assert_eq!(
        e["usageReportingId"],
        p.usage_reporting_id.clone().unwrap().as_str()
    );

    // The account's sign-up must be approved first.
    let (status, body) = t
        .call("POST", &format!("{path}:approve"), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(google_status(&body, 400), "FAILED_PRECONDITION");
    let account_path = format!("{}/accounts/{}", t.provider(), p.account_id);
    let (_, account) = t.call("GET", &account_path, None).await;
    assert_eq!(account["approvals"][0]["state"], "PENDING");

    t.activate(&p.account_id, &p.entitlement_id).await;
    let (_, account) = t.call("GET", &account_path, None).await;
    assert_eq!(account["approvals"][0]["state"], "APPROVED");
    let (_, e) = t.call("GET", &path, None).await;
    assert_eq!(e["state"], "ENTITLEMENT_ACTIVE");
    let (status, body) = t.call("POST", &format!("{path}:approve"), None).await;
    assert_eq!(
        (status, google_status(&body, 400).as_str()),
        (StatusCode::BAD_REQUEST, "FAILED_PRECONDITION")
    );
    assert_eq!(
        t.event_types(),
        [
            "ACCOUNT_ACTIVE",
            "ENTITLEMENT_CREATION_REQUESTED",
            "ENTITLEMENT_ACTIVE"
        ]
    );
    let created = &t.sandbox.published()[1].data;
    assert_eq!(created["providerId"], "DEMO-marketlink");
    assert_eq!(created["entitlement"]["id"], p.entitlement_id.as_str());
    assert_eq!(created["entitlement"]["orderId"], p.order_id.as_str());
}

#[tokio::test]
async fn plan_changes_are_approved_or_rejected_by_the_vendor() {
    let t = T::start().await;
    let p = t.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    t.activate(&p.account_id, &p.entitlement_id).await;
    let path = format!("{}/entitlements/{}", t.provider(), p.entitlement_id);
    t.sandbox
        .request_plan_change(&p.entitlement_id, "pro")
        .unwrap();
    let (_, e) = t.call("GET", &path, None).await;
    assert_eq!(
        (e["state"].as_str(), e["newPendingPlan"].as_str()),
        (
            Some("ENTITLEMENT_PENDING_PLAN_CHANGE_APPROVAL"),
            Some("pro")
        )
    );

    let (status, body) = t
        .call(
            "POST",
            &format!("{path}:approvePlanChange"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (status, google_status(&body, 400).as_str()),
        (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT")
    );
    let (status, _) = t
        .call(
            "POST",
            &format!("{path}:approvePlanChange"),
            Some(json!({"pendingPlanName": "enterprise"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = t
        .call(
            "POST",
            &format!("{path}:approvePlanChange"),
            Some(json!({"pendingPlanName": "pro"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, e) = t.call("GET", &path, None).await;
    assert_eq!(
        (e["state"].as_str(), e["plan"].as_str()),
        (Some("ENTITLEMENT_ACTIVE"), Some("pro"))
    );
    assert!(e.get("newPendingPlan").is_none());

    t.sandbox
        .request_plan_change(&p.entitlement_id, "enterprise")
        .unwrap();
    let body = json!({"pendingPlanName": "enterprise", "reason": "not offered"});
    let (status, _) = t
        .call("POST", &format!("{path}:rejectPlanChange"), Some(body))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, e) = t.call("GET", &path, None).await;
    assert_eq!(
        (e["state"].as_str(), e["plan"].as_str()),
        (Some("ENTITLEMENT_ACTIVE"), Some("pro"))
    );
    let events = t.event_types();
    assert_eq!(
        events[3..],
        [
            "ENTITLEMENT_PLAN_CHANGE_REQUESTED",
            "ENTITLEMENT_PLAN_CHANGED",
            "ENTITLEMENT_PLAN_CHANGE_REQUESTED",
            "ENTITLEMENT_PLAN_CHANGE_CANCELLED"
        ]
    );
    assert_eq!(
        t.sandbox.published()[3].data["entitlement"]["newPlan"],
        "pro"
    );
    // A plan change is not possible before activation.
    let q = t.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    assert!(
        t.sandbox
            .request_plan_change(&q.entitlement_id, "pro")
            .is_err()
    );
}

#[tokio::test]
async fn cancellation_pending_reverted_and_final() {
    let t = T::start().await;
    let p = t.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    t.activate(&p.account_id, &p.entitlement_id).await;
    let id = p.entitlement_id.as_str();
    t.sandbox.cancel(id, CancellationPolicy::EndOfTerm).unwrap();
    let e = t.sandbox.entitlement(id).unwrap();
    assert_eq!(e.state.name(), "ENTITLEMENT_PENDING_CANCELLATION");
    assert!(e.subscription_end_time.is_some());
    t.sandbox.revert_cancellation(id).unwrap();
    assert_eq!(
        t.sandbox.entitlement(id).unwrap().state.name(),
        "ENTITLEMENT_ACTIVE"
    );
    t.sandbox.cancel(id, CancellationPolicy::EndOfTerm).unwrap();
    t.sandbox.end_term(id).unwrap();
    let e = t.sandbox.entitlement(id).unwrap();
    assert_eq!(e.state.name(), "ENTITLEMENT_CANCELLED");
    assert_eq!(e.cancellation_reason.as_deref(), Some("user-cancelled"));
    assert!(
        t.sandbox.revert_cancellation(id).is_err(),
        "a cancelled entitlement stays cancelled"
    );
    assert_eq!(
        t.event_types()[3..],
        [
            "ENTITLEMENT_PENDING_CANCELLATION",
            "ENTITLEMENT_CANCELLATION_REVERTED",
            "ENTITLEMENT_PENDING_CANCELLATION",
            "ENTITLEMENT_CANCELLED"
        ]
    );
    let q = t.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    t.activate(&q.account_id, &q.entitlement_id).await;
    t.sandbox
        .cancel(&q.entitlement_id, CancellationPolicy::Immediate)
        .unwrap();
    assert_eq!(
        t.sandbox
            .entitlement(&q.entitlement_id)
            .unwrap()
            .state
            .name(),
        "ENTITLEMENT_CANCELLED"
    );
}

#[tokio::test]
async fn private_offers_and_renewals_carry_their_terms() {
    let t = T::start().await;
    let end = t.clock.now() + time::Duration::days(365);
    let offer = "projects/1/services/marketlink.example.com/privateOffers/po-1";
    let request = PurchaseRequest {
        private_offer: Some(PrivateOffer {
            offer: offer.into(),
            offer_duration: Some("P1Y".into()),
            offer_end_time: Some(end),
        }),
        ..PurchaseRequest::plan("enterprise")
    };
    let p = t.sandbox.purchase(request).unwrap();
    let message = &t.sandbox.published()[1].data;
    assert_eq!(message["eventType"], "ENTITLEMENT_OFFER_ACCEPTED");
    assert_eq!(message["entitlement"]["newOffer"], offer);
    assert_eq!(message["entitlement"]["newOfferDuration"], "P1Y");
    let (_, e) = t
        .call(
            "GET",
            &format!("{}/entitlements/{}", t.provider(), p.entitlement_id),
            None,
        )
        .await;
    assert_eq!(
        (e["offer"].as_str(), e["offerDuration"].as_str()),
        (Some(offer), Some("P1Y"))
    );
    t.activate(&p.account_id, &p.entitlement_id).await;
    t.sandbox
        .renew(&p.entitlement_id, end + time::Duration::days(365))
        .unwrap();
    assert_eq!(t.event_types().last().unwrap(), "ENTITLEMENT_RENEWED");
    assert_ne!(
        t.sandbox
            .entitlement(&p.entitlement_id)
            .unwrap()
            .offer_end_time,
        e["offerEndTime"].as_str().map(str::to_owned)
    );
}

#[tokio::test]
async fn errors_have_googles_shape() {
    let t = T::start().await;
    let p = t.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let e = format!("{}/entitlements/{}", t.provider(), p.entitlement_id);
    let cases = [
        (
            "GET",
            format!("{}/entitlements/nope", t.provider()),
            None,
            404,
            "NOT_FOUND",
        ),
        (
            "GET",
            format!("/v1/providers/OTHER/entitlements/{}", p.entitlement_id),
            None,
            403,
            "PERMISSION_DENIED",
        ),
        (
            "POST",
            format!("{e}:suspend"),
            Some(json!({})),
            501,
            "UNIMPLEMENTED",
        ),
        (
            "POST",
            format!("{e}:explode"),
            Some(json!({})),
            404,
            "NOT_FOUND",
        ),
        (
            "PATCH",
            format!("{e}?updateMask=plan"),
            Some(json!({"plan": "pro"})),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "POST",
            format!("{}/accounts/{}:approve", t.provider(), p.account_id),
            Some(json!({"approvalName": "other"})),
            400,
            "INVALID_ARGUMENT",
        ),
    ];
    for (method, path, body, code, status) in cases {
        let (got, body) = t.call(method, &path, body).await;
        assert_eq!(got.as_u16(), code, "{method} {path}: {body}");
        assert_eq!(google_status(&body, code), status);
    }
    let (status, body) = t
        .call(
            "PATCH",
            &format!("{e}?updateMask=messageToUser"),
            Some(json!({"messageToUser": "Welcome"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["messageToUser"], "Welcome");
    t.activate(&p.account_id, &p.entitlement_id).await;
    let (status, _) = t
        .call(
            "PATCH",
            &format!("{e}?updateMask=messageToUser"),
            Some(json!({"messageToUser": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not writable once active");
}

#[tokio::test]
async fn lists_filter_and_page() {
    let t = T::start().await;
    let a = t.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    let b = t.sandbox.purchase(PurchaseRequest::plan("pro")).unwrap();
    let second_order = PurchaseRequest {
        account_id: Some(a.account_id.clone()),
        ..PurchaseRequest::plan("pro")
    };
    t.sandbox.purchase(second_order).unwrap();
    t.activate(&a.account_id, &a.entitlement_id).await;
    let list = |filter: &str| format!("{}/entitlements?filter={}", t.provider(), urlencode(filter));
    let count = |body: &serde_json::Value| body["entitlements"].as_array().map_or(0, Vec::len);
    let (_, body) = t.call("GET", &list("state=active"), None).await;
    assert_eq!(count(&body), 1);
    let (_, body) = t
        .call("GET", &list(&format!("account={}", a.account_id)), None)
        .await;
    assert_eq!(count(&body), 2);
    let (_, body) = t
        .call(
            "GET",
            &list(&format!("plan=pro AND NOT account={}", a.account_id)),
            None,
        )
        .await;
    assert_eq!(
        body["entitlements"][0]["name"],
        format!(
            "providers/DEMO-marketlink/entitlements/{}",
            b.entitlement_id
        )
    );
    let (status, body) = t.call("GET", &list("colour=red"), None).await;
    assert_eq!(
        (status, google_status(&body, 400).as_str()),
        (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT")
    );
    let (_, page) = t
        .call(
            "GET",
            &format!("{}/entitlements?pageSize=2", t.provider()),
            None,
        )
        .await;
    assert_eq!(count(&page), 2);
    let token = page["nextPageToken"].as_str().unwrap();
    let (_, rest) = t
        .call(
            "GET",
            &format!("{}/entitlements?pageSize=2&pageToken={token}", t.provider()),
            None,
        )
        .await;
    assert_eq!(count(&rest), 1);
    assert!(rest.get("nextPageToken").is_none());
    let (_, accounts) = t
        .call("GET", &format!("{}/accounts", t.provider()), None)
        .await;
    assert_eq!(accounts["accounts"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn reset_cancels_entitlements_and_publishes_nothing() {
    let t = T::start().await;
    let p = t.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    t.activate(&p.account_id, &p.entitlement_id).await;
    let published = t.sandbox.published().len();
    let (status, _) = t
        .call(
            "POST",
            &format!("{}/accounts/{}:reset", t.provider(), p.account_id),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        t.sandbox
            .entitlement(&p.entitlement_id)
            .unwrap()
            .state
            .name(),
        "ENTITLEMENT_CANCELLED"
    );
    assert_eq!(
        t.sandbox.account(&p.account_id).unwrap().approvals[0].state,
        marketlink_sandbox::gcp::ApprovalState::Pending
    );
    assert_eq!(t.sandbox.published().len(), published);
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn an_approved_change_can_wait_for_the_billing_cycle() {
    let t = T::start_with(|c| c.plan_change_at_cycle_end = true).await;
    let p = t.sandbox.purchase(PurchaseRequest::plan("basic")).unwrap();
    t.activate(&p.account_id, &p.entitlement_id).await;
    t.sandbox
        .request_plan_change(&p.entitlement_id, "pro")
        .unwrap();
    let path = format!(
        "{}/entitlements/{}:approvePlanChange",
        t.provider(),
        p.entitlement_id
    );
    let (status, _) = t
        .call("POST", &path, Some(json!({"pendingPlanName": "pro"})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let e = t.sandbox.entitlement(&p.entitlement_id).unwrap();
    assert_eq!(
        (e.state.name().as_str(), e.plan.as_str()),
        ("ENTITLEMENT_PENDING_PLAN_CHANGE", "basic")
    );
    assert_eq!(
        t.event_types().last().unwrap(),
        "ENTITLEMENT_PLAN_CHANGE_REQUESTED"
    );
    t.sandbox.complete_plan_change(&p.entitlement_id).unwrap();
    let e = t.sandbox.entitlement(&p.entitlement_id).unwrap();
    assert_eq!(
        (e.state.name().as_str(), e.plan.as_str()),
        ("ENTITLEMENT_ACTIVE", "pro")
    );
    assert_eq!(t.event_types().last().unwrap(), "ENTITLEMENT_PLAN_CHANGED");
}
