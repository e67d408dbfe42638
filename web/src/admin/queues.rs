//! Work that needs an operator: dead letters with retry and provisioning webhooks with
//! replay (set-up requests are in `onboarding`).

use std::collections::HashMap;

use axum::{
    Form,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{Redirect, Response},
};
use marketlink_engine::admin::DeadQueue;
use marketlink_store::{QueueItem, QueueState, StoreError};

use super::{
    actor, internal,
    table::{Row, TablePage, cell, when},
};
use crate::session::CsrfForm;
use crate::{AppState, extract::Operator, pages::PageError};

/// Items shown per dead-letter queue and per webhook state.
const DEAD_LIMIT: u32 = 200;
const WEBHOOK_LIMIT: u32 = 100;

pub(super) async fn dead(
    State(state): State<AppState>,
    operator: Operator,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let dead = state
        .engine
        .dead_letters(DEAD_LIMIT)
        .await
        .map_err(internal)?;
    let mut page = TablePage::new(
        &state,
        &operator,
        "Dead letters",
        vec![
            (
                "Marketplace messages we could not apply".into(),
                vec!["When", "Marketplace", "Kind", "Attempts", "Last error", ""],
                dead_rows(DeadQueue::Inbox, dead.inbox),
            ),
            (
                "Calls and webhooks we gave up on".into(),
                vec!["When", "Target", "Kind", "Attempts", "Last error", ""],
                dead_rows(DeadQueue::Outbox, dead.outbox),
            ),
        ],
    );
    page.notice = query
        .get("retried")
        .map(|_| "Queued again; the workers pick it up within a second.".into());
    Ok(page.render())
}

fn dead_rows(queue: DeadQueue, items: Vec<QueueItem>) -> Vec<Row> {
    items
        .into_iter()
        .map(|item| Row {
            action: Some((
                format!("/admin/dead/{}/{}/retry", queue.as_str(), item.id),
                "Retry".into(),
            )),
            cells: vec![
                cell(when(item.updated_at)),
                cell(&item.marketplace),
                cell(&item.kind),
                cell(item.attempts),
                cell(item.last_error.unwrap_or_default()),
            ],
        })
        .collect()
}

pub(super) async fn retry(
    State(state): State<AppState>,
    operator: Operator,
    Path((queue, id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Redirect, PageError> {
    if !operator.browser.session.csrf_matches(&form.csrf) {
        return Err(PageError::forbidden_form());
    }
    let not_found = |explanation| PageError::new(StatusCode::NOT_FOUND, "Not found", explanation);
    let id = id
        .parse::<uuid::Uuid>()
        .map_err(|_| not_found("No such dead letter."))?;
    let no_longer_dead = || not_found("That item is not dead any more.");
    let queue = DeadQueue::parse(&queue).ok_or_else(no_longer_dead)?;
    match state.engine.retry_dead(&actor(&operator), queue, id).await {
        Ok(()) if queue == DeadQueue::Usage => Ok(Redirect::to("/admin/usage?retried=1")),
        Ok(()) => Ok(Redirect::to("/admin/dead?retried=1")),
        Err(StoreError::NotFound(_)) => Err(no_longer_dead()),
        Err(error) => Err(internal(error)),
    }
}

/// Provisioning webhooks to the vendor's product: waiting, delivered, given up; replayable.
pub(super) async fn webhooks(
    State(state): State<AppState>,
    operator: Operator,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
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
        let jobs = state
            .engine
            .webhook_deliveries(queue_state, WEBHOOK_LIMIT)
            .await
            .map_err(internal)?;
        tables.push((
            caption.to_string(),
            vec!["When", "webhook-id", "Type", "Attempts", "Last error", ""],
            jobs.into_iter()
                .map(|job| webhook_row(job, replayable))
                .collect(),
        ));
    }
    let mut page = TablePage::new(&state, &operator, "Webhook deliveries", tables);
    page.notice = query
        .get("replayed")
        .map(|_| "Queued again with the same webhook-id.".into());
    Ok(page.render())
}

fn webhook_row(job: QueueItem, replayable: bool) -> Row {
    Row {
        action: replayable.then(|| {
            (
                format!("/admin/webhooks/{}/replay", job.id),
                "Replay".into(),
            )
        }),
        cells: vec![
            cell(when(job.updated_at)),
            cell(format!("msg_{}", job.id.simple())),
            cell(job.payload["type"].as_str().unwrap_or("?")),
            cell(job.attempts),
            cell(job.last_error.clone().unwrap_or_default()),
        ],
    }
}

pub(super) async fn replay_webhook(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Redirect, PageError> {
    if !operator.browser.session.csrf_matches(&form.csrf) {
        return Err(PageError::forbidden_form());
    }
    let not_found = |explanation| PageError::new(StatusCode::NOT_FOUND, "Not found", explanation);
    let id = id
        .parse::<uuid::Uuid>()
        .map_err(|_| not_found("No such webhook."))?;
    match state.engine.replay_webhook(&actor(&operator), id).await {
        Ok(()) => Ok(Redirect::to("/admin/webhooks?replayed=1")),
        Err(StoreError::NotFound(_)) => Err(not_found(
            "That webhook is still being sent or does not exist.",
        )),
        Err(error) => Err(internal(error)),
    }
}
