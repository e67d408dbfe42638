//! `marketlink meter flush|status`: usage delivery by hand, and what is waiting.

use anyhow::Context;
use marketlink_core::{Clock, SystemClock};
use marketlink_store::UsageHourState;

use super::{database::open_store, wiring::command_engine};
use crate::config::Config;

/// `marketlink meter flush`: sends every closed hour now, as the worker would.
pub async fn meter_flush(config: Config) -> anyhow::Result<()> {
    let engine = command_engine(&config).await?;
    let run = engine.flush_usage().await.context("usage flush failed")?;
    println!(
        "claimed {} hour(s) in {} call(s): {} delivered, {} retrying, {} mismatched, {} dead, {} skipped; {} zero hour(s) created",
        run.claimed,
        run.calls,
        run.delivered,
        run.retried,
        run.mismatched,
        run.dead,
        run.skipped,
        run.zero_created
    );
    engine.store.close().await;
    Ok(())
}

/// `marketlink meter status`: hourly totals per state, the backlog and the dead letters.
pub async fn meter_status(config: Config) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let settings = config.metering.settings();
    let now = SystemClock.now();
    let closed =
        marketlink_engine::metering::hour_floor(now - settings.settle) - time::Duration::hours(1);
    let backlog = store.usage_backlog(closed).await?;
    println!("hourly usage totals by state:");
    if backlog.by_state.is_empty() {
        println!("  (none)");
    }
    for (state, count) in &backlog.by_state {
        println!("  {state:<10} {count}");
    }
    match backlog.oldest_due_hour {
        Some(oldest) => println!(
            "backlog: {} closed hour(s) waiting to be delivered, oldest {oldest}",
            backlog.due
        ),
        None => println!("backlog: nothing waiting"),
    }
    for (title, state) in [
        ("dead letters", UsageHourState::Dead),
        ("quantity mismatches", UsageHourState::Mismatch),
    ] {
        print_hours_in(&store, title, state).await?;
    }
    store.close().await;
    Ok(())
}

/// The newest 20 hours in `state` under `title`; nothing when there are none.
async fn print_hours_in(
    store: &marketlink_store::Store,
    title: &str,
    state: UsageHourState,
) -> anyhow::Result<()> {
    let rows = store.usage_hours_in(state, 20).await?;
    if rows.is_empty() {
        return Ok(());
    }
    println!("{title} (newest 20):");
    for row in rows {
        println!(
            "  {} {} {} {} qty {} after {} attempt(s): {}",
            row.id,
            row.marketplace,
            row.hour,
            row.dimension,
            row.quantity,
            row.attempts,
            row.last_error.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}
