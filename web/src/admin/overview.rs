//! The portal's first page (health and subscription counts) and the tenant list.

use std::collections::HashMap;

use axum::{
    extract::{Query, State},
    response::Response,
};
use marketlink_core::TenantId;
use marketlink_engine::admin::Overview;

use super::{
    internal,
    table::{PAGE, Row, TablePage, cell, link, urlencode, when},
};
use crate::{AppState, extract::Operator, pages::PageError};

pub(super) async fn overview(
    State(state): State<AppState>,
    operator: Operator,
) -> Result<Response, PageError> {
    let overview = state.engine.overview().await.map_err(internal)?;
    let health = health_rows(&overview);
    let counts = overview
        .subscriptions
        .into_iter()
        .map(|(marketplace, status, count)| {
            Row::new(vec![
                cell(&marketplace),
                link(
                    &status,
                    format!("/admin/subscriptions?marketplace={marketplace}&status={status}"),
                ),
                cell(count),
            ])
        })
        .collect();
    let tables = vec![
        ("Health".into(), vec!["", ""], health),
        (
            "Subscriptions".into(),
            vec!["Marketplace", "Status", "Count"],
            counts,
        ),
    ];
    Ok(TablePage::new(&state, &operator, "Overview", tables).render())
}

fn health_rows(overview: &Overview) -> Vec<Row> {
    let oldest = overview
        .inbox_oldest
        .map(|d| format!("{}s", d.whole_seconds()))
        .unwrap_or_else(|| "—".into());
    vec![
        Row::new(vec![cell("Tenants"), cell(overview.tenants)]),
        Row::new(vec![
            cell("Marketplace messages waiting"),
            cell(overview.inbox_waiting),
        ]),
        Row::new(vec![cell("Oldest waiting message"), cell(oldest)]),
    ]
}

pub(super) async fn tenants(
    State(state): State<AppState>,
    operator: Operator,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let q = query.get("q").cloned().unwrap_or_default();
    let after = query.get("after").and_then(|a| a.parse::<TenantId>().ok());
    let list = state
        .engine
        .search_tenants(None, &q, after, PAGE)
        .await
        .map_err(internal)?;
    let next = (list.len() == PAGE as usize)
        .then(|| list.last())
        .flatten()
        .map(|t| format!("/admin/tenants?q={}&after={}", urlencode(&q), t.id));
    let rows = list
        .into_iter()
        .map(|t| {
            Row::new(vec![
                link(&t.name, format!("/admin/subscriptions?tenant={}", t.id)),
                cell(t.company.unwrap_or_default()),
                cell(&t.contact_email),
                cell(when(t.created_at)),
            ])
        })
        .collect();
    let mut page = TablePage::new(
        &state,
        &operator,
        "Tenants",
        vec![(
            "Tenants".into(),
            vec!["Name", "Company", "Contact", "Created"],
            rows,
        )],
    );
    page.filters = vec![("q", "Name or email".into(), q)];
    page.next = next;
    Ok(page.render())
}
