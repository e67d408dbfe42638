//! `marketlink webhooks list|replay`: provisioning webhooks to the vendor's product.

use anyhow::Context;
use marketlink_core::{Clock, SystemClock};
use marketlink_store::{AuditEntry, QueueState, Store};

use super::database::open_store;
use crate::config::Config;

#[derive(Debug, clap::Subcommand)]
pub enum WebhookCommand {
    /// Recent provisioning webhooks with their delivery state and last error.
    List {
        /// pending, done or dead.
        #[arg(long, default_value = "dead")]
        state: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Send a delivered or given-up webhook again (same webhook-id).
    Replay { id: String },
}

pub async fn webhooks(config: Config, action: WebhookCommand) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    store.migrate().await.context("migration failed")?;
    match action {
        WebhookCommand::List { state, limit } => list(&store, &state, limit).await?,
        WebhookCommand::Replay { id } => replay(&store, &id).await?,
    }
    store.close().await;
    Ok(())
}

async fn list(store: &Store, state: &str, limit: u32) -> anyhow::Result<()> {
    let state = match state {
        "pending" => QueueState::Pending,
        "done" => QueueState::Done,
        "dead" => QueueState::Dead,
        other => anyhow::bail!("unknown state `{other}` (use pending, done or dead)"),
    };
    for job in store.outbox_list(state, limit).await? {
        if job.kind != marketlink_engine::webhooks::WEBHOOK_JOB {
            continue;
        }
        println!(
            "{}  {:<36} attempts {:<3} {}",
            job.id,
            job.payload["type"].as_str().unwrap_or("?"),
            job.attempts,
            job.last_error.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

async fn replay(store: &Store, id: &str) -> anyhow::Result<()> {
    let id: uuid::Uuid = id
        .parse()
        .map_err(|_| anyhow::anyhow!("`{id}` is not a webhook id"))?;
    store.outbox_replay(id, SystemClock.now()).await?;
    store
        .audit(&AuditEntry::new(
            "cli",
            "webhook.replay",
            Some(id.to_string()),
            serde_json::json!({}),
            SystemClock.now(),
        ))
        .await?;
    println!("webhook {id} queued again; a running server sends it within a second");
    Ok(())
}
