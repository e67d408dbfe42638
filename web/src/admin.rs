//! The operators' admin portal: tenants, subscriptions by marketplace and status, a
//! subscription's timeline, dead letters with retry, manual set-up requests. Behind its own
//! sign-in (`[admin] users`), every form CSRF-protected, lists paged by cursor.

use std::collections::HashMap;

use askama::Template;
use axum::{
    Form, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use axum_extra::extract::PrivateCookieJar;
use marketlink_core::{Marketplace, SubscriptionId, SubscriptionStatus, TenantId};
use marketlink_store::{QueueState, SubscriptionFilter};
use serde::{Deserialize, Serialize};

use crate::{
    AppState,
    pages::{Branding, PageError, render},
    password,
    session::Session,
};

const PAGE: u32 = 50;

/// An operator allowed into the portal; the hash comes from `marketlink admin hash-password`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminUser {
    pub email: String,
    pub password_hash: String,
}

impl std::fmt::Debug for AdminUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash can be attacked offline: keep it out of logs (the configuration is Debug).
        f.debug_struct("AdminUser")
            .field("email", &self.email)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/login", get(login_page).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin", get(overview))
        .route("/admin/tenants", get(tenants))
        .route("/admin/subscriptions", get(subscriptions))
        .route("/admin/subscriptions/{id}", get(subscription))
        .route("/admin/dead", get(dead))
        .route("/admin/dead/{queue}/{id}/retry", post(retry))
        .route("/admin/onboarding", get(onboarding))
        .route("/admin/usage", get(usage))
        .route("/admin/api-keys", get(keys_page).post(create_key))
        .route("/admin/api-keys/{prefix}/revoke", post(revoke_key))
        .route("/admin/audit", get(audit))
        .route("/admin/webhooks", get(webhooks))
        .route("/admin/webhooks/{id}/replay", post(replay_webhook))
}

#[derive(Template)]
#[template(path = "admin_login.html")]
struct LoginPage {
    brand: Branding,
    csrf: String,
    error: Option<String>,
}

struct Cell {
    text: String,
    href: Option<String>,
}

fn cell(text: impl ToString) -> Cell {
    Cell {
        text: text.to_string(),
        href: None,
    }
}

fn link(text: impl ToString, href: String) -> Cell {
    Cell {
        text: text.to_string(),
        href: Some(href),
    }
}

struct Row {
    cells: Vec<Cell>,
    action: Option<(String, String)>,
}

type Table = (String, Vec<&'static str>, Vec<Row>);

#[derive(Template)]
#[template(path = "admin_table.html")]
struct TablePage {
    brand: Branding,
    csrf: String,
    title: String,
    notice: Option<String>,
    filters: Vec<(&'static str, &'static str, String)>,
    tables: Vec<Table>,
    next: Option<String>,
}

/// The signed-in operator's session; `None` sends the browser to the sign-in page.
fn operator(state: &AppState, jar: &PrivateCookieJar) -> Option<Session> {
    Some(Session::load(jar, state.clock.now())).filter(|s| s.admin.is_some())
}

fn to_login() -> Response {
    Redirect::to("/admin/login").into_response()
}

/// A timestamp in UTC to the second: operators compare it with logs, and it stays on one line.
fn when(t: time::OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
        ))
        .unwrap_or_default()
}

async fn login_page(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
) -> (PrivateCookieJar, Response) {
    let session = Session::load(&jar, state.clock.now());
    let page = LoginPage {
        brand: state.settings.branding.clone(),
        csrf: session.csrf.clone(),
        error: None,
    };
    let jar = session.save(jar, state.clock.now(), state.settings.secure_cookies);
    (jar, render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
struct LoginForm {
    csrf: String,
    email: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Form(form): Form<LoginForm>,
) -> (PrivateCookieJar, Response) {
    let mut session = Session::load(&jar, state.clock.now());
    if !session.csrf_matches(&form.csrf) {
        return (
            jar,
            PageError::forbidden_form().render(&state.settings.branding),
        );
    }
    let email = form.email.trim().to_lowercase();
    let admin = state
        .settings
        .admins
        .iter()
        .find(|a| a.email.to_lowercase() == email);
    // Verify against a dummy hash for unknown emails so timing reveals nothing.
    let hash = admin
        .map(|a| a.password_hash.clone())
        .unwrap_or_else(|| password::DUMMY_HASH.into());
    let ok = password::verify(form.password.clone(), hash).await && admin.is_some();
    if !ok {
        tracing::warn!(%email, "admin sign-in refused");
        let page = LoginPage {
            brand: state.settings.branding.clone(),
            csrf: session.csrf.clone(),
            error: Some("That email and password do not match an operator.".into()),
        };
        return (jar, render(StatusCode::UNAUTHORIZED, &page));
    }
    session.admin = Some(email);
    audit_entry(
        &state,
        &session,
        "admin.sign_in",
        None,
        serde_json::json!({}),
    )
    .await;
    let jar = session.save(jar, state.clock.now(), state.settings.secure_cookies);
    (jar, Redirect::to("/admin").into_response())
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Form(form): Form<CsrfForm>,
) -> (PrivateCookieJar, Response) {
    let session = Session::load(&jar, state.clock.now());
    if !session.csrf_matches(&form.csrf) {
        return (
            jar,
            PageError::forbidden_form().render(&state.settings.branding),
        );
    }
    let fresh = Session::reset(state.clock.now());
    let jar = fresh.save(jar, state.clock.now(), state.settings.secure_cookies);
    (jar, Redirect::to("/admin/login").into_response())
}

fn page(state: &AppState, session: &Session, title: &str, tables: Vec<Table>) -> TablePage {
    TablePage {
        brand: state.settings.branding.clone(),
        csrf: session.csrf.clone(),
        title: title.into(),
        notice: None,
        filters: Vec::new(),
        tables,
        next: None,
    }
}

fn internal(error: &dyn std::fmt::Display, brand: &Branding) -> Response {
    PageError::internal(error).render(brand)
}

async fn overview(State(state): State<AppState>, jar: PrivateCookieJar) -> Response {
    let Some(session) = operator(&state, &jar) else {
        return to_login();
    };
    let brand = &state.settings.branding;
    let (tenants, counts, backlog) = match (
        state.store.tenant_count().await,
        state.store.subscription_counts().await,
        state.store.inbox_backlog(state.clock.now()).await,
    ) {
        (Ok(t), Ok(c), Ok(b)) => (t, c, b),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return internal(&e, brand),
    };
    let rows = counts
        .into_iter()
        .map(|(marketplace, status, count)| Row {
            cells: vec![
                cell(&marketplace),
                link(
                    &status,
                    format!("/admin/subscriptions?marketplace={marketplace}&status={status}"),
                ),
                cell(count),
            ],
            action: None,
        })
        .collect();
    let health = vec![
        Row {
            cells: vec![cell("Tenants"), cell(tenants)],
            action: None,
        },
        Row {
            cells: vec![cell("Marketplace messages waiting"), cell(backlog.0)],
            action: None,
        },
        Row {
            cells: vec![
                cell("Oldest waiting message"),
                cell(
                    backlog
                        .1
                        .map(|d| format!("{}s", d.whole_seconds()))
                        .unwrap_or_else(|| "—".into()),
                ),
            ],
            action: None,
        },
    ];
    render(
        StatusCode::OK,
        &page(
            &state,
            &session,
            "Overview",
            vec![
                ("Health".into(), vec!["", ""], health),
                (
                    "Subscriptions".into(),
                    vec!["Marketplace", "Status", "Count"],
                    rows,
                ),
            ],
        ),
    )
}

async fn tenants(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(session) = operator(&state, &jar) else {
        return to_login();
    };
    let q = query.get("q").cloned().unwrap_or_default();
    let after = query.get("after").and_then(|a| a.parse::<TenantId>().ok());
    let list = match state.store.search_tenants(Some(&q), after, PAGE).await {
        Ok(list) => list,
        Err(e) => return internal(&e, &state.settings.branding),
    };
    let next = (list.len() == PAGE as usize)
        .then(|| {
            list.last()
                .map(|t| format!("/admin/tenants?q={}&after={}", urlencode(&q), t.id))
        })
        .flatten();
    let rows = list
        .into_iter()
        .map(|t| Row {
            cells: vec![
                link(&t.name, format!("/admin/subscriptions?tenant={}", t.id)),
                cell(t.company.unwrap_or_default()),
                cell(&t.contact_email),
                cell(when(t.created_at)),
            ],
            action: None,
        })
        .collect();
    let mut page = page(
        &state,
        &session,
        "Tenants",
        vec![(
            "Tenants".into(),
            vec!["Name", "Company", "Contact", "Created"],
            rows,
        )],
    );
    page.filters = vec![("q", "Name or email", q)];
    page.next = next;
    render(StatusCode::OK, &page)
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn subscriptions(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(session) = operator(&state, &jar) else {
        return to_login();
    };
    let get = |k: &str| {
        query
            .get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let marketplace = get("marketplace");
    let status = get("status");
    let tenant = get("tenant");
    let filter = SubscriptionFilter {
        tenant_id: tenant.as_deref().and_then(|t| t.parse().ok()),
        marketplace: marketplace
            .as_deref()
            .and_then(|m| Marketplace::parse(m).ok()),
        status: status.as_deref().and_then(SubscriptionStatus::parse),
        after: get("after").and_then(|a| a.parse::<SubscriptionId>().ok()),
        limit: PAGE,
    };
    let list = match state.store.list_subscriptions(&filter).await {
        Ok(list) => list,
        Err(e) => return internal(&e, &state.settings.branding),
    };
    let next = (list.len() == PAGE as usize)
        .then(|| {
            list.last().map(|s| {
                format!(
                    "/admin/subscriptions?marketplace={}&status={}&tenant={}&after={}",
                    marketplace.clone().unwrap_or_default(),
                    status.clone().unwrap_or_default(),
                    tenant.clone().unwrap_or_default(),
                    s.id
                )
            })
        })
        .flatten();
    let rows = list
        .into_iter()
        .map(|s| Row {
            cells: vec![
                link(s.id, format!("/admin/subscriptions/{}", s.id)),
                cell(&s.external.marketplace),
                cell(&s.external.product_code),
                cell(s.status),
                cell(s.plan_id.map(|p| p.to_string()).unwrap_or_default()),
                cell(
                    s.tenant_id
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "(not linked)".into()),
                ),
            ],
            action: None,
        })
        .collect();
    let mut page = page(
        &state,
        &session,
        "Subscriptions",
        vec![(
            "Subscriptions".into(),
            vec!["Id", "Marketplace", "Product", "Status", "Plan", "Tenant"],
            rows,
        )],
    );
    page.filters = vec![
        (
            "marketplace",
            "Marketplace (aws, azure)",
            marketplace.unwrap_or_default(),
        ),
        (
            "status",
            "Status (active, pending, …)",
            status.unwrap_or_default(),
        ),
        ("tenant", "Tenant id", tenant.unwrap_or_default()),
    ];
    page.next = next;
    render(StatusCode::OK, &page)
}

async fn subscription(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Path(id): Path<String>,
) -> Response {
    let Some(session) = operator(&state, &jar) else {
        return to_login();
    };
    let brand = &state.settings.branding;
    let Ok(id) = id.parse::<SubscriptionId>() else {
        return PageError::new(
            StatusCode::NOT_FOUND,
            "Subscription not found",
            "No such subscription.",
        )
        .render(brand);
    };
    let s = match state.store.get_subscription(id).await {
        Ok(s) => s,
        Err(marketlink_store::StoreError::NotFound(_)) => {
            return PageError::new(
                StatusCode::NOT_FOUND,
                "Subscription not found",
                "No such subscription.",
            )
            .render(brand);
        }
        Err(e) => return internal(&e, brand),
    };
    let timeline = state.store.timeline(id, 500).await.unwrap_or_default();
    let facts = vec![
        ("Marketplace", s.external.marketplace.to_string()),
        ("External id", s.external.external_id.clone()),
        ("Customer", s.external.customer_id.clone()),
        ("Product", s.external.product_code.clone()),
        ("Status", s.status.to_string()),
        ("Plan", s.plan_id.map(|p| p.to_string()).unwrap_or_default()),
        (
            "Quantity",
            s.quantity.map(|q| q.to_string()).unwrap_or_default(),
        ),
        (
            "Tenant",
            s.tenant_id.map(|t| t.to_string()).unwrap_or_default(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| Row {
        cells: vec![cell(k), cell(v)],
        action: None,
    })
    .collect();
    let events = timeline
        .into_iter()
        .map(|e| Row {
            cells: vec![
                cell(when(e.recorded_at)),
                cell(e.source),
                cell(e.kind),
                cell(e.outcome),
            ],
            action: None,
        })
        .collect();
    render(
        StatusCode::OK,
        &page(
            &state,
            &session,
            &format!("Subscription {id}"),
            vec![
                ("Facts".into(), vec!["", ""], facts),
                (
                    "Timeline: every marketplace notification and our action".into(),
                    vec!["When", "From", "What", "Result"],
                    events,
                ),
            ],
        ),
    )
}

async fn dead(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(session) = operator(&state, &jar) else {
        return to_login();
    };
    let brand = &state.settings.branding;
    let (inbox, outbox) = match (
        state.store.inbox_list(QueueState::Dead, 200).await,
        state.store.outbox_list(QueueState::Dead, 200).await,
    ) {
        (Ok(i), Ok(o)) => (i, o),
        (Err(e), _) | (_, Err(e)) => return internal(&e, brand),
    };
    let rows = |queue: &'static str, items: Vec<marketlink_store::QueueItem>| -> Vec<Row> {
        items
            .into_iter()
            .map(|item| Row {
                cells: vec![
                    cell(when(item.updated_at)),
                    cell(&item.marketplace),
                    cell(&item.kind),
                    cell(item.attempts),
                    cell(item.last_error.unwrap_or_default()),
                ],
                action: Some((
                    format!("/admin/dead/{queue}/{}/retry", item.id),
                    "Retry".into(),
                )),
            })
            .collect()
    };
    let mut page = page(
        &state,
        &session,
        "Dead letters",
        vec![
            (
                "Marketplace messages we could not apply".into(),
                vec!["When", "Marketplace", "Kind", "Attempts", "Last error", ""],
                rows("inbox", inbox),
            ),
            (
                "Calls and webhooks we gave up on".into(),
                vec!["When", "Target", "Kind", "Attempts", "Last error", ""],
                rows("outbox", outbox),
            ),
        ],
    );
    page.notice = query
        .get("retried")
        .map(|_| "Queued again; the workers pick it up within a second.".into());
    render(StatusCode::OK, &page)
}

async fn retry(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Path((queue, id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let Some(session) = operator(&state, &jar) else {
        return to_login();
    };
    let brand = &state.settings.branding;
    if !session.csrf_matches(&form.csrf) {
        return PageError::forbidden_form().render(brand);
    }
    let Ok(id) = id.parse::<uuid::Uuid>() else {
        return PageError::new(StatusCode::NOT_FOUND, "Not found", "No such dead letter.")
            .render(brand);
    };
    let now = state.clock.now();
    let result = match queue.as_str() {
        "inbox" => state.store.inbox_requeue(id, now).await,
        "outbox" => state.store.outbox_requeue(id, now).await,
        "usage" => state.store.usage_requeue(id, now).await,
        _ => Err(marketlink_store::StoreError::NotFound("queue")),
    };
    match result {
        Ok(()) => {
            audit_entry(
                &state,
                &session,
                &format!("{queue}.requeue"),
                Some(&id.to_string()),
                serde_json::json!({}),
            )
            .await;
            state.engine.inbox_ready.notify_one();
            state.engine.outbox_ready.notify_one();
            if queue == "usage" {
                Redirect::to("/admin/usage?retried=1").into_response()
            } else {
                Redirect::to("/admin/dead?retried=1").into_response()
            }
        }
        Err(marketlink_store::StoreError::NotFound(_)) => PageError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            "That item is not dead any more.",
        )
        .render(brand),
        Err(e) => internal(&e, brand),
    }
}

async fn onboarding(State(state): State<AppState>, jar: PrivateCookieJar) -> Response {
    let Some(session) = operator(&state, &jar) else {
        return to_login();
    };
    let list = match state.store.list_onboarding_requests("open", 200).await {
        Ok(list) => list,
        Err(e) => return internal(&e, &state.settings.branding),
    };
    let rows = list
        .into_iter()
        .map(|r| Row {
            cells: vec![
                cell(when(r.created_at)),
                cell(&r.name),
                cell(&r.email),
                cell(r.company.unwrap_or_default()),
                cell(&r.purchase.subscription.marketplace),
                cell(&r.purchase.subscription.customer_id),
                cell(r.message.unwrap_or_default()),
            ],
            action: None,
        })
        .collect();
    render(
        StatusCode::OK,
        &page(
            &state,
            &session,
            "Set-up requests",
            vec![(
                "Buyers waiting for a hand-held set-up".into(),
                vec![
                    "When",
                    "Name",
                    "Email",
                    "Company",
                    "Marketplace",
                    "Customer",
                    "Message",
                ],
                rows,
            )],
        ),
    )
}

async fn usage(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(session) = operator(&state, &jar) else {
        return to_login();
    };
    let brand = &state.settings.branding;
    let now = state.clock.now();
    let backlog = match state.store.usage_backlog(now).await {
        Ok(b) => b,
        Err(e) => return internal(&e, brand),
    };
    let mut summary: Vec<Row> = backlog
        .by_state
        .iter()
        .map(|(s, n)| Row {
            cells: vec![cell(s), cell(n)],
            action: None,
        })
        .collect();
    summary.push(Row {
        cells: vec![
            cell("closed hours waiting"),
            cell(format!(
                "{}{}",
                backlog.due,
                backlog
                    .oldest_due_hour
                    .map(|h| format!(" (oldest {})", when(h)))
                    .unwrap_or_default()
            )),
        ],
        action: None,
    });
    let recent = match state
        .store
        .usage_by_hour(now - time::Duration::hours(48))
        .await
    {
        Ok(recent) => recent,
        Err(e) => return internal(&e, brand),
    };
    let mut tables = vec![
        (
            "Hourly totals by state".to_string(),
            vec!["State", "Hours"],
            summary,
        ),
        (
            "Sent and pending per hour (last 48 hours; one row per subscription and dimension)"
                .to_string(),
            vec![
                "Hour",
                "Marketplace",
                "Sent",
                "Waiting",
                "Failed",
                "Skipped",
            ],
            recent
                .into_iter()
                .map(|h| Row {
                    cells: vec![
                        cell(when(h.hour)),
                        cell(&h.marketplace),
                        cell(h.delivered),
                        cell(h.waiting),
                        cell(h.failed),
                        cell(h.skipped),
                    ],
                    action: None,
                })
                .collect(),
        ),
    ];
    for (title, state_name) in [
        (
            "Dead letters: usage the marketplace did not bill",
            marketlink_store::UsageHourState::Dead,
        ),
        (
            "Quantity mismatches to investigate",
            marketlink_store::UsageHourState::Mismatch,
        ),
    ] {
        let rows = match state.store.usage_hours_in(state_name, 100).await {
            Ok(rows) => rows,
            Err(e) => return internal(&e, brand),
        };
        tables.push((
            title.to_string(),
            vec![
                "Hour",
                "Marketplace",
                "Subscription",
                "Dimension",
                "Quantity",
                "Attempts",
                "Why",
                "",
            ],
            rows.into_iter()
                .map(|h| Row {
                    // Dead hours can be sent again once the cause is fixed; mismatches cannot.
                    action: (state_name == marketlink_store::UsageHourState::Dead).then(|| {
                        (
                            format!("/admin/dead/usage/{}/retry", h.id),
                            "Send again".to_owned(),
                        )
                    }),
                    cells: vec![
                        cell(when(h.hour)),
                        cell(&h.marketplace),
                        link(
                            h.subscription_id,
                            format!("/admin/subscriptions/{}", h.subscription_id),
                        ),
                        cell(&h.dimension),
                        cell(h.quantity),
                        cell(h.attempts),
                        cell(h.last_error.or(h.outcome).unwrap_or_default()),
                    ],
                })
                .collect(),
        ));
    }
    let mut page = page(&state, &session, "Usage", tables);
    page.notice = query
        .get("retried")
        .map(|_| "Queued again; the next flush sends the same record.".into());
    render(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "admin_keys.html")]
struct KeysPage {
    brand: Branding,
    csrf: String,
    created: Option<String>,
    error: Option<String>,
    keys: Vec<(String, String, String, String, String, bool)>,
}

async fn keys_view(
    state: &AppState,
    session: &Session,
    created: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let keys = match state.store.list_api_keys().await {
        Ok(keys) => keys,
        Err(e) => return internal(&e, &state.settings.branding),
    };
    let keys = keys
        .into_iter()
        .map(|k| {
            let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
            (
                k.prefix,
                k.name,
                scopes.join(", "),
                k.tenant_id
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "all".into()),
                when(k.created_at),
                k.revoked_at.is_some(),
            )
        })
        .collect();
    render(
        status,
        &KeysPage {
            brand: state.settings.branding.clone(),
            csrf: session.csrf.clone(),
            created,
            error,
            keys,
        },
    )
}

async fn keys_page(State(state): State<AppState>, jar: PrivateCookieJar) -> Response {
    let Some(session) = operator(&state, &jar) else {
        return to_login();
    };
    keys_view(&state, &session, None, None, StatusCode::OK).await
}

async fn audit_entry(
    state: &AppState,
    session: &Session,
    action: &str,
    target: Option<&str>,
    detail: serde_json::Value,
) {
    let entry = marketlink_store::AuditEntry::new(
        format!("admin:{}", session.admin.clone().unwrap_or_default()),
        action,
        target.map(str::to_owned),
        detail,
        state.clock.now(),
    );
    if let Err(error) = state.store.audit(&entry).await {
        tracing::error!(%error, "cannot write the audit log");
    }
}

async fn create_key(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    axum_extra::extract::Form(form): axum_extra::extract::Form<KeyForm>,
) -> Response {
    let Some(session) = operator(&state, &jar) else {
        return to_login();
    };
    if !session.csrf_matches(&form.csrf) {
        return PageError::forbidden_form().render(&state.settings.branding);
    }
    let scopes: Result<Vec<marketlink_core::Scope>, String> =
        form.scope.iter().map(|s| s.parse()).collect();
    let invalid = |message: String| {
        keys_view(
            &state,
            &session,
            None,
            Some(message),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    };
    let scopes = match scopes {
        Ok(scopes) if !scopes.is_empty() => scopes,
        Ok(_) => return invalid("Choose at least one scope.".into()).await,
        Err(message) => return invalid(message).await,
    };
    let name = form.name.trim();
    if name.is_empty() {
        return invalid("Give the key a name.".into()).await;
    }
    let tenant = match form.tenant.trim() {
        "" => None,
        raw => match raw.parse::<TenantId>() {
            Ok(id) if state.store.get_tenant(id).await.is_ok() => Some(id),
            _ => return invalid(format!("There is no tenant `{raw}`.")).await,
        },
    };
    let (key, plaintext, hash) = crate::api_auth::new_key(name, scopes, tenant, state.clock.now());
    if let Err(e) = state.store.create_api_key(&key, &hash).await {
        return internal(&e, &state.settings.branding);
    }
    audit_entry(
        &state,
        &session,
        "api_key.create",
        Some(&key.prefix),
        serde_json::json!({ "name": key.name, "scopes": key.scopes, "tenant_id": key.tenant_id }),
    )
    .await;
    keys_view(&state, &session, Some(plaintext), None, StatusCode::CREATED).await
}

#[derive(Deserialize)]
struct KeyForm {
    csrf: String,
    name: String,
    #[serde(default)]
    scope: Vec<String>,
    #[serde(default)]
    tenant: String,
}

async fn revoke_key(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Path(prefix): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let Some(session) = operator(&state, &jar) else {
        return to_login();
    };
    if !session.csrf_matches(&form.csrf) {
        return PageError::forbidden_form().render(&state.settings.branding);
    }
    match state.store.revoke_api_key(&prefix, state.clock.now()).await {
        Ok(key) => {
            audit_entry(
                &state,
                &session,
                "api_key.revoke",
                Some(&key.prefix),
                serde_json::json!({ "name": key.name }),
            )
            .await;
            Redirect::to("/admin/api-keys").into_response()
        }
        Err(marketlink_store::StoreError::NotFound(_)) => PageError::new(
            StatusCode::NOT_FOUND,
            "No such key",
            "There is no key with that prefix.",
        )
        .render(&state.settings.branding),
        Err(e) => internal(&e, &state.settings.branding),
    }
}

async fn audit(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(session) = operator(&state, &jar) else {
        return to_login();
    };
    let actor = query
        .get("actor")
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty());
    let entries = match state.store.audit_log(actor.as_deref(), 200).await {
        Ok(entries) => entries,
        Err(e) => return internal(&e, &state.settings.branding),
    };
    let rows = entries
        .into_iter()
        .map(|e| Row {
            cells: vec![
                cell(when(e.at)),
                cell(&e.actor),
                cell(&e.action),
                cell(e.target.unwrap_or_default()),
                cell(e.detail),
            ],
            action: None,
        })
        .collect();
    let mut page = page(
        &state,
        &session,
        "Audit log",
        vec![(
            "Newest first".into(),
            vec!["When", "Who", "What", "On", "Detail"],
            rows,
        )],
    );
    page.filters = vec![(
        "actor",
        "Actor, e.g. cli or admin:ops@…",
        actor.unwrap_or_default(),
    )];
    render(StatusCode::OK, &page)
}

/// Provisioning webhooks to the vendor's product: waiting, delivered, given up; replayable.
async fn webhooks(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(session) = operator(&state, &jar) else {
        return to_login();
    };
    let mut tables = Vec::new();
    for (caption, queue_state, replayable) in [
        (
            "Given up (replay once the endpoint works)",
            QueueState::Dead,
            true,
        ),
        ("Waiting or retrying", QueueState::Pending, false),
        ("Delivered", QueueState::Done, true),
    ] {
        let jobs = match state.store.outbox_list(queue_state, 100).await {
            Ok(jobs) => jobs,
            Err(e) => return internal(&e, &state.settings.branding),
        };
        let rows = jobs
            .into_iter()
            .filter(|job| job.kind == marketlink_engine::webhooks::WEBHOOK_JOB)
            .map(|job| Row {
                cells: vec![
                    cell(when(job.updated_at)),
                    cell(format!("msg_{}", job.id.simple())),
                    cell(job.payload["type"].as_str().unwrap_or("?")),
                    cell(job.attempts),
                    cell(job.last_error.clone().unwrap_or_default()),
                ],
                action: replayable.then(|| {
                    (
                        format!("/admin/webhooks/{}/replay", job.id),
                        "Replay".into(),
                    )
                }),
            })
            .collect();
        tables.push((
            caption.to_string(),
            vec!["When", "webhook-id", "Type", "Attempts", "Last error", ""],
            rows,
        ));
    }
    let mut page = page(&state, &session, "Webhook deliveries", tables);
    page.notice = query
        .get("replayed")
        .map(|_| "Queued again with the same webhook-id.".into());
    render(StatusCode::OK, &page)
}

async fn replay_webhook(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let Some(session) = operator(&state, &jar) else {
        return to_login();
    };
    let brand = &state.settings.branding;
    if !session.csrf_matches(&form.csrf) {
        return PageError::forbidden_form().render(brand);
    }
    let Ok(id) = id.parse::<uuid::Uuid>() else {
        return PageError::new(StatusCode::NOT_FOUND, "Not found", "No such webhook.")
            .render(brand);
    };
    match state.store.outbox_replay(id, state.clock.now()).await {
        Ok(()) => {
            audit_entry(
                &state,
                &session,
                "webhook.replay",
                Some(&id.to_string()),
                serde_json::json!({}),
            )
            .await;
            state.engine.outbox_ready.notify_one();
            Redirect::to("/admin/webhooks?replayed=1").into_response()
        }
        Err(marketlink_store::StoreError::NotFound(_)) => PageError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            "That webhook is still being sent or does not exist.",
        )
        .render(brand),
        Err(e) => internal(&e, brand),
    }
}
