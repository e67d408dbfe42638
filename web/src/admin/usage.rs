//! Usage on its way to the marketplaces: hours by state, the last two days hour by hour, and
//! the hours to look at (dead letters to send again, quantity mismatches to investigate).

use std::collections::HashMap;

use axum::{
    extract::{Query, State},
    response::Response,
};
use marketlink_store::{UsageBacklog, UsageHour, UsageHourSummary};

use super::{
    internal,
    table::{Row, Table, TablePage, cell, link, when},
};
use crate::{AppState, extract::Operator, pages::PageError};

/// Dead and mismatched hours shown each.
const PROBLEMS_LIMIT: u32 = 100;

pub(super) async fn usage(
    State(state): State<AppState>,
    operator: Operator,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let usage = state
        .engine
        .usage_overview(PROBLEMS_LIMIT)
        .await
        .map_err(internal)?;
    let tables = vec![
        summary_table(&usage.backlog),
        recent_table(usage.recent),
        problem_table(
            "Dead letters: usage the marketplace did not bill",
            usage.dead,
            true,
        ),
        problem_table(
            "Quantity mismatches to investigate",
            usage.mismatches,
            false,
        ),
    ];
    let mut page = TablePage::new(&state, &operator, "Usage", tables);
    page.notice = query
        .get("retried")
        .map(|_| "Queued again; the next flush sends the same record.".into());
    Ok(page.render())
}

fn summary_table(backlog: &UsageBacklog) -> Table {
    let mut rows: Vec<Row> = backlog
        .by_state
        .iter()
        .map(|(s, n)| Row::new(vec![cell(s), cell(n)]))
        .collect();
    let oldest = backlog
        .oldest_due_hour
        .map(|h| format!(" (oldest {})", when(h)))
        .unwrap_or_default();
    rows.push(Row::new(vec![
        cell("closed hours waiting"),
        cell(format!("{}{oldest}", backlog.due)),
    ]));
    (
        "Hourly totals by state".to_string(),
        vec!["State", "Hours"],
        rows,
    )
}

fn recent_table(recent: Vec<UsageHourSummary>) -> Table {
    let rows = recent
        .into_iter()
        .map(|h| {
            Row::new(vec![
                cell(when(h.hour)),
                cell(&h.marketplace),
                cell(h.delivered),
                cell(h.waiting),
                cell(h.failed),
                cell(h.skipped),
            ])
        })
        .collect();
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
        rows,
    )
}

/// Dead hours can be sent again once the cause is fixed (`retryable`); mismatches cannot.
fn problem_table(title: &str, hours: Vec<UsageHour>, retryable: bool) -> Table {
    let rows = hours
        .into_iter()
        .map(|h| Row {
            action: retryable.then(|| {
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
        .collect();
    (
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
        rows,
    )
}
