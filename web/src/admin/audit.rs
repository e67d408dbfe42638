//! The audit log, newest first, optionally of one actor.

use std::collections::HashMap;

use axum::{
    extract::{Query, State},
    response::Response,
};

use super::{
    internal,
    table::{Row, TablePage, cell, when},
};
use crate::{AppState, extract::Operator, pages::PageError};

const LIMIT: u32 = 200;

pub(super) async fn audit(
    State(state): State<AppState>,
    operator: Operator,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let actor = query
        .get("actor")
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty());
    let entries = state
        .engine
        .audit_log(actor.as_deref(), LIMIT)
        .await
        .map_err(internal)?;
    let rows = entries
        .into_iter()
        .map(|e| {
            Row::new(vec![
                cell(when(e.at)),
                cell(&e.actor),
                cell(&e.action),
                cell(e.target.unwrap_or_default()),
                cell(e.detail),
            ])
        })
        .collect();
    let mut page = TablePage::new(
        &state,
        &operator,
        "Audit log",
        vec![(
            "Newest first".into(),
            vec!["When", "Who", "What", "On", "Detail"],
            rows,
        )],
    );
    page.filters = vec![(
        "actor",
        "Actor, e.g. cli or admin:ops@…".into(),
        actor.unwrap_or_default(),
    )];
    Ok(page.render())
}
