//! Operations: the admin API for tenants and keys (with tenant isolation and the audit log),
//! the OpenAPI description and docs page, and Prometheus metrics after real traffic.

use marketlink_core::{ApiKey, Clock, Scope, SubscriptionStatus, SystemClock, TenantId};
use marketlink_e2e::{Stack, aws_buyer_signs_up, browser, eventually, start, start_full};
use marketlink_sandbox::aws::{OfferKind, SubscriptionAction};
use marketlink_store::SubscriptionFilter;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn key(stack: &Stack, scopes: Vec<Scope>, tenant: Option<TenantId>) -> (ApiKey, String) {
    let (key, plaintext, hash) =
        marketlink_web::api_auth::new_key("test", scopes, tenant, time::OffsetDateTime::UNIX_EPOCH);
    stack.store.create_api_key(&key, &hash).await.unwrap();
    (key, plaintext)
}

/// An AWS buyer of the classic product signed up as `email`; returns the tenant and agreement.
async fn customer(stack: &Stack, email: &str) -> (TenantId, String) {
    let account = format!("{:012}", email.bytes().map(u64::from).sum::<u64>() * 7919);
    let purchase =
        aws_buyer_signs_up(stack, &browser(), OfferKind::Subscription, &account, email).await;
    let (user, _) = stack
        .store
        .find_user_by_email(email)
        .await
        .unwrap()
        .unwrap();
    (user.tenant_id, purchase.agreement_id)
}

async fn call(
    stack: &Stack,
    method: Method,
    key: Option<&str>,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", stack.app_url));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (
        response.status(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn get(stack: &Stack, key: &str, path: &str) -> (StatusCode, Value) {
    call(stack, Method::GET, Some(key), path, None).await
}

#[tokio::test]
async fn an_admin_key_lists_tenants_and_manages_keys_with_an_audit_trail() {
    let stack = start(|_| {}).await;
    let (a, _) = customer(&stack, "alpha@example.com").await;
    let (b, _) = customer(&stack, "bravo@example.com").await;
    let (admin_key, admin) = key(&stack, vec![Scope::Admin], None).await;
    let (_, reader) = key(&stack, vec![Scope::EntitlementsRead], None).await;

    // Scope and authentication.
    assert_eq!(
        get(&stack, &reader, "/api/v1/tenants").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&stack, Method::GET, None, "/api/v1/api-keys", None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    // Tenants: a page, a search, a cursor.
    let (status, all) = get(&stack, &admin, "/api/v1/tenants").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = all["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a.to_string(), b.to_string()]);
    assert_eq!(all["next"], Value::Null);
    let (_, found) = get(&stack, &admin, "/api/v1/tenants?q=BRAVO").await;
    assert_eq!(found["tenants"].as_array().unwrap().len(), 1);
    assert_eq!(found["tenants"][0]["id"], b.to_string());
    let (_, first) = get(&stack, &admin, "/api/v1/tenants?limit=1").await;
    assert_eq!(first["tenants"][0]["id"], a.to_string());
    let next = first["next"].as_str().unwrap().to_owned();
    let (_, second) = get(
        &stack,
        &admin,
        &format!("/api/v1/tenants?limit=1&after={next}"),
    )
    .await;
    assert_eq!(second["tenants"][0]["id"], b.to_string());
    assert_eq!(
        get(&stack, &admin, "/api/v1/tenants?limit=0").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(&stack, &admin, "/api/v1/tenants?after=nope").await.0,
        StatusCode::BAD_REQUEST
    );

    // One tenant with its subscription.
    let (status, detail) = get(&stack, &admin, &format!("/api/v1/tenants/{a}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["contact_email"], "alpha@example.com");
    let subscriptions = detail["subscriptions"].as_array().unwrap();
    assert_eq!(subscriptions.len(), 1);
    assert_eq!(subscriptions[0]["marketplace"], "aws");
    assert_eq!(subscriptions[0]["status"], "pending");
    assert_eq!(
        get(
            &stack,
            &admin,
            &format!("/api/v1/tenants/{}", TenantId::new())
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    // Keys: create (secret once), use, list, revoke.
    let (status, created) = call(
        &stack,
        Method::POST,
        Some(&admin),
        "/api/v1/api-keys",
        Some(json!({"name": "product backend", "scopes": ["entitlements:read"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let prefix = created["prefix"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(&format!("mlk_{prefix}_")));
    assert_eq!(created["scopes"], json!(["entitlements:read"]));
    let check = format!("/api/v1/check?tenant={a}&product=analytics");
    assert_eq!(get(&stack, &secret, &check).await.0, StatusCode::OK);
    let (_, listed) = get(&stack, &admin, "/api/v1/api-keys").await;
    let listed = listed["api_keys"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|k| k.get("secret").is_none()));
    let (status, revoked) = call(
        &stack,
        Method::DELETE,
        Some(&admin),
        &format!("/api/v1/api-keys/{prefix}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(
        get(&stack, &secret, &check).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(
            &stack,
            Method::DELETE,
            Some(&admin),
            "/api/v1/api-keys/nosuchprefix",
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    // Bad input is named.
    for (body, code) in [
        (json!({"name": "x", "scopes": ["root"]}), "invalid_scope"),
        (json!({"name": "x", "scopes": []}), "invalid_scope"),
        (json!({"name": " ", "scopes": ["admin"]}), "invalid_name"),
        (
            json!({"name": "x", "scopes": ["admin"], "extra": 1}),
            "invalid_body",
        ),
        (
            json!({"name": "x", "scopes": ["admin"], "tenant_id": "nope"}),
            "invalid_tenant",
        ),
    ] {
        let (status, error) = call(
            &stack,
            Method::POST,
            Some(&admin),
            "/api/v1/api-keys",
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(error["error"]["code"], code);
    }

    // Both changes are in the audit log under the calling key.
    let actor = format!("key:{}", admin_key.prefix);
    let log = stack.store.audit_log(Some(&actor), 10).await.unwrap();
    let actions: Vec<(&str, Option<&str>)> = log
        .iter()
        .map(|e| (e.action.as_str(), e.target.as_deref()))
        .collect();
    assert_eq!(
        actions,
        [
            ("api_key.revoke", Some(prefix.as_str())),
            ("api_key.create", Some(prefix.as_str()))
        ]
    );
    assert!(!serde_json::to_string(&log).unwrap().contains(&secret));
}

#[tokio::test]
async fn a_tenant_bound_admin_key_never_leaves_its_tenant() {
    let stack = start(|_| {}).await;
    let (a, _) = customer(&stack, "alpha@example.com").await;
    let (b, _) = customer(&stack, "bravo@example.com").await;
    let (_, vendor_wide) = key(&stack, vec![Scope::Admin], None).await;
    let (other_key, _) = key(&stack, vec![Scope::EntitlementsRead], Some(a)).await;
    let (own_key, of_b) = key(&stack, vec![Scope::Admin], Some(b)).await;

    let (_, list) = get(&stack, &of_b, "/api/v1/tenants").await;
    let ids: Vec<&Value> = list["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["id"])
        .collect();
    assert_eq!(ids, [&json!(b.to_string())]);
    let (_, searched) = get(&stack, &of_b, "/api/v1/tenants?q=alpha").await;
    assert_eq!(searched["tenants"], json!([]));
    assert_eq!(
        get(&stack, &of_b, &format!("/api/v1/tenants/{b}")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(&stack, &of_b, &format!("/api/v1/tenants/{a}")).await.0,
        StatusCode::NOT_FOUND
    );

    // Keys: only its tenant's, created only for its tenant.
    let (_, keys) = get(&stack, &of_b, "/api/v1/api-keys").await;
    let prefixes: Vec<&Value> = keys["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["prefix"])
        .collect();
    assert_eq!(prefixes, [&json!(own_key.prefix)]);
    let (status, _) = call(
        &stack,
        Method::POST,
        Some(&of_b),
        "/api/v1/api-keys",
        Some(json!({"name": "x", "scopes": ["admin"], "tenant_id": a.to_string()})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, created) = call(
        &stack,
        Method::POST,
        Some(&of_b),
        "/api/v1/api-keys",
        Some(json!({"name": "agent", "scopes": ["entitlements:read"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        created["tenant_id"],
        b.to_string(),
        "bound to the caller's tenant"
    );
    assert_eq!(
        call(
            &stack,
            Method::DELETE,
            Some(&of_b),
            &format!("/api/v1/api-keys/{}", other_key.prefix),
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    // The other tenant's key still works.
    let (_, all) = call(
        &stack,
        Method::GET,
        Some(&vendor_wide),
        "/api/v1/api-keys",
        None,
    )
    .await;
    let other = all["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["prefix"] == json!(other_key.prefix))
        .cloned()
        .unwrap();
    assert_eq!(other["revoked_at"], Value::Null);
}

#[tokio::test]
async fn the_openapi_description_is_served_and_every_operation_is_routed() {
    let stack = start(|_| {}).await;
    let (status, served) = call(&stack, Method::GET, None, "/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let generated: Value = serde_json::from_str(&marketlink_web::openapi::json()).unwrap();
    assert_eq!(served, generated);
    assert!(served["openapi"].as_str().unwrap().starts_with("3.1"));
    let mut operations = 0;
    for (path, item) in served["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{id}", &TenantId::new().to_string())
            .replace("{prefix}", "abcdefabcdef");
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, body) = call(&stack, method.clone(), None, &concrete, None).await;
            // Routed and authenticated: not 404 or 405.
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
            operations += 1;
        }
    }
    assert_eq!(operations, 8);
    let page = browser()
        .get(format!("{}/api/docs", stack.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    for needle in [
        "POST /api/v1/usage",
        "DELETE /api/v1/api-keys/{prefix}",
        "id=\"schema-CheckAnswer\"",
    ] {
        assert!(html.contains(needle), "docs page lacks {needle}");
    }
    assert!(
        !html.contains("https://"),
        "the docs page works offline: no external assets"
    );
}

/// The value of the series `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_marketplace_calls_usage_and_backlogs() {
    let stack = start_full(
        |_| {},
        |_| {},
        |config| {
            config.server.metrics_token =
                Some(serde_json::from_value(json!("scrape-token-0123456789")).unwrap())
        },
    )
    .await;
    let (tenant, agreement) = customer(&stack, "metrics@example.com").await;
    stack
        .aws
        .send_subscription_event(&agreement, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    let filter = SubscriptionFilter {
        tenant_id: Some(tenant),
        limit: 10,
        ..SubscriptionFilter::default()
    };
    eventually("the subscription is active", || async {
        stack.store.list_subscriptions(&filter).await.unwrap()[0].status
            == SubscriptionStatus::Active
    })
    .await;
    let subscription = stack.store.list_subscriptions(&filter).await.unwrap()[0].id;
    let (_, reader) = key(&stack, vec![Scope::EntitlementsRead], None).await;
    let check = format!("/api/v1/check?tenant={tenant}&product=analytics");
    for _ in 0..3 {
        assert_eq!(
            call(&stack, Method::GET, Some(&reader), &check, None)
                .await
                .0,
            StatusCode::OK
        );
    }
    let (_, usage_key) = key(&stack, vec![Scope::UsageWrite], None).await;
    let at = SystemClock.now() - time::Duration::minutes(1);
    let event = json!({"subscription_id": subscription.to_string(), "dimension": "api_calls",
        "quantity": 5, "idempotency_key": "m-1",
        "timestamp": at.format(&time::format_description::well_known::Rfc3339).unwrap()});
    let (status, body) = call(
        &stack,
        Method::POST,
        Some(&usage_key),
        "/api/v1/usage",
        Some(json!([event.clone(), event])),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        call(&stack, Method::GET, None, "/no/such/page", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // Two Microsoft buyers land: each landing resolves the token with the marketplace API,
    // which needs the publisher's API token (fetched once, then from the cache).
    for _ in 0..2 {
        let purchase = stack
            .azure
            .purchase(marketlink_sandbox::azure::PurchaseRequest {
                offer_id: "contoso-analytics".into(),
                plan_id: "pro".into(),
                quantity: Some(3),
                buyer_object_id: "11111111-aaaa-4bbb-8ccc-000000000001".into(),
                subscription_name: None,
                is_test: false,
            })
            .await
            .unwrap();
        let client = marketlink_e2e::browser_trusting(&stack.azure.ca_pem);
        marketlink_e2e::azure_land_and_sign_in(
            &client,
            &purchase.landing_url,
            "11111111-aaaa-4bbb-8ccc-000000000001",
        )
        .await;
    }

    // A job scheduled for tomorrow waits in the outbox.
    stack
        .store
        .outbox_enqueue(
            &marketlink_store::NewJob {
                marketplace: "aws".into(),
                kind: "ops.later".into(),
                dedup_key: "metrics-test".into(),
                payload: json!({}),
                run_at: SystemClock.now() + time::Duration::days(1),
            },
            SystemClock.now(),
        )
        .await
        .unwrap();

    let scrape = |token: Option<&'static str>| {
        let url = format!("{}/metrics", stack.app_url);
        async move {
            let mut request = reqwest::Client::new().get(url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send().await.unwrap()
        }
    };
    assert_eq!(scrape(None).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        scrape(Some("wrong-token-0123456789")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let response = scrape(Some("scrape-token-0123456789")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };

    // HTTP by route template, not raw path; latency as a histogram.
    let check_route = [
        ("method", "GET"),
        ("route", "/api/v1/check"),
        ("status", "200"),
    ];
    assert!(value("marketlink_http_requests_total", &check_route) >= 3.0);
    assert!(
        value(
            "marketlink_http_request_duration_seconds_count",
            &check_route
        ) >= 3.0
    );
    let mut bucket = check_route.to_vec();
    bucket.push(("le", "+Inf"));
    assert!(value("marketlink_http_request_duration_seconds_bucket", &bucket) >= 3.0);
    assert!(
        value(
            "marketlink_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ) >= 1.0
    );
    assert!(
        !text.contains(&tenant.to_string()),
        "no raw paths as labels"
    );

    // Marketplace calls by provider, operation and outcome.
    let resolve = [
        ("provider", "aws"),
        ("operation", "resolve"),
        ("outcome", "ok"),
    ];
    assert!(value("marketlink_marketplace_calls_total", &resolve) >= 1.0);
    let duration = value("marketlink_marketplace_call_duration_seconds_sum", &resolve);
    assert!(duration > 0.0 && duration < 30.0, "{duration}");

    let azure_resolve = [
        ("provider", "azure"),
        ("operation", "resolve"),
        ("outcome", "ok"),
    ];
    assert!(value("marketlink_marketplace_calls_total", &azure_resolve) >= 2.0);
    let token = |result| {
        value(
            "marketlink_token_cache_total",
            &[("provider", "azure"), ("result", result)],
        )
    };
    assert!(token("miss") >= 1.0 && token("hit") >= 1.0);

    // Usage in: one accepted, one duplicate; the open hour is in the database.
    assert!(value("marketlink_usage_events_total", &[("result", "accepted")]) >= 1.0);
    assert!(value("marketlink_usage_events_total", &[("result", "duplicate")]) >= 1.0);
    assert!(value("marketlink_usage_hours", &[("state", "open")]) >= 1.0);
    assert!(value("marketlink_usage_hours", &[("state", "dead")]) >= 0.0);
    assert!(value("marketlink_usage_due_hours", &[]) >= 0.0);

    // Backlogs sampled from the database at scrape time.
    assert_eq!(
        value(
            "marketlink_outbox_backlog",
            &[("kind", "ops.later"), ("state", "pending")]
        ),
        1.0
    );
    assert!(value("marketlink_inbox_backlog", &[]) >= 0.0);
    assert!(value("marketlink_inbox_oldest_age_seconds", &[]) >= 0.0);
    assert_eq!(value("marketlink_database_up", &[]), 1.0);
}

#[tokio::test]
async fn metrics_without_a_token_are_closed_outside_the_demo() {
    let stack = start_full(
        |_| {},
        |_| {},
        |config| config.server.metrics_public = false,
    )
    .await;
    let response = reqwest::get(format!("{}/metrics", stack.app_url))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body = response.text().await.unwrap();
    assert!(body.contains("metrics_token"), "{body}");
    assert!(!body.contains("marketlink_http_requests_total"), "{body}");
}

#[tokio::test]
async fn metrics_can_be_switched_off() {
    let stack = start_full(|_| {}, |_| {}, |config| config.server.metrics = false).await;
    let (status, _) = call(&stack, Method::GET, None, "/metrics", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
