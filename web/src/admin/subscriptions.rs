//! Subscriptions filtered by marketplace, status and tenant, and one subscription's facts
//! with its timeline.

use std::collections::HashMap;

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::Response,
};
use marketlink_core::{Marketplace, Subscription, SubscriptionId, SubscriptionStatus};
use marketlink_store::{StoreError, SubscriptionFilter, TimelineEntry};

use super::{
    internal,
    table::{PAGE, Row, TablePage, cell, link, when},
};
use crate::{AppState, extract::Operator, pages::PageError};

/// The list's filters as typed (kept to refill the form and the next-page link).
struct Filters {
    marketplace: Option<String>,
    status: Option<String>,
    tenant: Option<String>,
    after: Option<String>,
}

impl Filters {
    fn from_query(query: &HashMap<String, String>) -> Self {
        let get = |k: &str| {
            query
                .get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        Self {
            marketplace: get("marketplace"),
            status: get("status"),
            tenant: get("tenant"),
            after: get("after"),
        }
    }

    /// What the store is asked; values that do not parse filter nothing.
    fn to_store(&self) -> SubscriptionFilter {
        SubscriptionFilter {
            tenant_id: self.tenant.as_deref().and_then(|t| t.parse().ok()),
            marketplace: self
                .marketplace
                .as_deref()
                .and_then(|m| Marketplace::parse(m).ok()),
            status: self.status.as_deref().and_then(SubscriptionStatus::parse),
            after: self
                .after
                .as_deref()
                .and_then(|a| a.parse::<SubscriptionId>().ok()),
            limit: PAGE,
        }
    }

    fn next_page(&self, last: SubscriptionId) -> String {
        format!(
            "/admin/subscriptions?marketplace={}&status={}&tenant={}&after={last}",
            self.marketplace.clone().unwrap_or_default(),
            self.status.clone().unwrap_or_default(),
            self.tenant.clone().unwrap_or_default(),
        )
    }

    /// The form's fields; `marketplaces` are the configured ones' names, as a hint.
    fn into_form(self, marketplaces: &[String]) -> Vec<(&'static str, String, String)> {
        vec![
            (
                "marketplace",
                format!("Marketplace ({})", marketplaces.join(", ")),
                self.marketplace.unwrap_or_default(),
            ),
            (
                "status",
                "Status (active, pending, …)".into(),
                self.status.unwrap_or_default(),
            ),
            (
                "tenant",
                "Tenant id".into(),
                self.tenant.unwrap_or_default(),
            ),
        ]
    }
}

pub(super) async fn list(
    State(state): State<AppState>,
    operator: Operator,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let filters = Filters::from_query(&query);
    let list = state
        .engine
        .list_subscriptions(&filters.to_store())
        .await
        .map_err(internal)?;
    let next = (list.len() == PAGE as usize)
        .then(|| list.last())
        .flatten()
        .map(|s| filters.next_page(s.id));
    let rows = list.into_iter().map(subscription_row).collect();
    let mut page = TablePage::new(
        &state,
        &operator,
        "Subscriptions",
        vec![(
            "Subscriptions".into(),
            vec!["Id", "Marketplace", "Product", "Status", "Plan", "Tenant"],
            rows,
        )],
    );
    let marketplaces: Vec<String> = state
        .engine
        .providers
        .iter()
        .map(|p| p.marketplace().to_string())
        .collect();
    page.filters = filters.into_form(&marketplaces);
    page.next = next;
    Ok(page.render())
}

fn subscription_row(s: Subscription) -> Row {
    Row::new(vec![
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
    ])
}

fn not_found() -> PageError {
    PageError::new(
        StatusCode::NOT_FOUND,
        "Subscription not found",
        "No such subscription.",
    )
}

pub(super) async fn one(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = id.parse::<SubscriptionId>().map_err(|_| not_found())?;
    let detail = match state.engine.subscription_history(id).await {
        Ok(detail) => detail,
        Err(StoreError::NotFound(_)) => return Err(not_found()),
        Err(error) => return Err(internal(error)),
    };
    let tables = vec![
        ("Facts".into(), vec!["", ""], facts(&detail.subscription)),
        (
            "Other names at the marketplace (agreements, licences)".into(),
            vec!["Kind", "Name"],
            detail
                .aliases
                .into_iter()
                .map(|a| Row::new(vec![cell(a.kind), cell(a.value)]))
                .collect(),
        ),
        (
            "Timeline: every marketplace notification and our action".into(),
            vec!["When", "From", "What", "Result"],
            detail.timeline.into_iter().map(timeline_row).collect(),
        ),
    ];
    Ok(TablePage::new(&state, &operator, &format!("Subscription {id}"), tables).render())
}

fn facts(s: &Subscription) -> Vec<Row> {
    [
        ("Marketplace", s.external.marketplace.to_string()),
        ("External id", s.external.external_id.clone()),
        ("Customer", s.external.customer_id.clone()),
        ("Product", s.external.product_code.clone()),
        (
            "Licence",
            s.external.license_arn.clone().unwrap_or_default(),
        ),
        ("Status", s.status.to_string()),
        (
            "Plan",
            s.plan_id
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default(),
        ),
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
    .map(|(k, v)| Row::new(vec![cell(k), cell(v)]))
    .collect()
}

fn timeline_row(e: TimelineEntry) -> Row {
    Row::new(vec![
        cell(when(e.recorded_at)),
        cell(e.source),
        cell(e.kind),
        cell(e.outcome),
    ])
}
