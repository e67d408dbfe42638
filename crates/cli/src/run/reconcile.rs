//! `marketlink reconcile [--dry-run]`: one comparison with the marketplaces, printed.

use anyhow::Context;
use marketlink_core::Entitlement;
use marketlink_engine::reconcile::{Action, Drift, EntitlementDifference, ReconcileReport};

use super::wiring::command_engine;
use crate::config::Config;

/// `marketlink reconcile [--dry-run]`: compares with the marketplaces, prints the drift and
/// what was repaired.
pub async fn reconcile(config: Config, dry_run: bool) -> anyhow::Result<()> {
    let report = reconcile_once(&config, dry_run).await?;
    for (marketplace, reason) in &report.skipped {
        println!("{marketplace}: not surveyed: {reason}");
    }
    for (marketplace, reason, count) in &report.status_unknown {
        println!("{marketplace}: status not compared for {count} subscription(s): {reason}");
    }
    for item in &report.items {
        let (label, detail) = match &item.action {
            Action::Repaired(d) => ("repaired", d),
            Action::WouldRepair(d) => ("would repair", d),
            Action::ReportOnly(d) => ("left alone", d),
            Action::Failed(d) => ("repair failed", d),
        };
        println!(
            "{} {}: {}; {label}: {detail}",
            item.marketplace,
            item.external_id,
            drift_text(&item.drift)
        );
    }
    println!(
        "{} subscription(s) surveyed, {} drift(s): {} repaired, {} left alone{}, {} failed",
        report.surveyed,
        report.items.len(),
        report.repaired,
        report.report_only,
        if dry_run { " (dry run)" } else { "" },
        report.failed
    );
    Ok(())
}

/// One reconciliation run with the configured marketplaces, as `marketlink reconcile` does it.
pub async fn reconcile_once(config: &Config, dry_run: bool) -> anyhow::Result<ReconcileReport> {
    let engine = command_engine(config).await?;
    let report = engine
        .reconcile(&config.reconcile.settings(dry_run))
        .await
        .context("reconciliation failed");
    engine.store.close().await;
    report
}

fn drift_text(drift: &Drift) -> String {
    let or_none = |v: Option<String>| v.unwrap_or_else(|| "none".into());
    match drift {
        Drift::StatusMismatch { ours, theirs } => {
            format!("status: ours {ours}, the marketplace's {theirs}")
        }
        Drift::PlanMismatch { ours, theirs } => format!(
            "plan: ours {}, the marketplace's {theirs}",
            or_none(ours.as_ref().map(ToString::to_string))
        ),
        Drift::QuantityMismatch { ours, theirs } => format!(
            "quantity: ours {}, the marketplace's {theirs}",
            or_none(ours.map(|q| q.to_string()))
        ),
        Drift::EntitlementsDiffer {
            ours,
            theirs,
            differences,
        } => entitlements_text(*ours, *theirs, differences),
        Drift::UnknownToUs { theirs } => format!(
            "we never saw it (the marketplace says {})",
            or_none(theirs.map(|s| s.to_string()))
        ),
        Drift::StuckPending { since } => format!("pending since {since}: activation stuck"),
    }
}

/// "entitlements differ on seats (ours 10 until …, the marketplace's 10 until …)": which
/// dimension and what each side holds, since equal counts alone say nothing.
fn entitlements_text(ours: usize, theirs: usize, differences: &[EntitlementDifference]) -> String {
    let side = |e: &Option<Entitlement>| match e {
        None => "none".to_owned(),
        Some(Entitlement {
            value,
            expires_at: Some(at),
            ..
        }) => format!("{value} until {at}"),
        Some(e) => e.value.to_string(),
    };
    if differences.is_empty() {
        return format!("entitlements differ: ours {ours}, the marketplace's {theirs}");
    }
    let each: Vec<String> = differences
        .iter()
        .map(|d| {
            format!(
                "{} (ours {}, the marketplace's {})",
                d.dimension,
                side(&d.ours),
                side(&d.theirs)
            )
        })
        .collect();
    format!("entitlements differ on {}", each.join("; "))
}
