//! The day's verdict, from the marketplace's own ledger: exactly the units acknowledged per
//! subscription and hour, and how long each hour's usage waited once it was both
//! acknowledged and settled.

use std::time::{Duration, Instant};

use marketlink_sandbox::aws::AwsSandbox;
use time::OffsetDateTime;

use super::{DayArgs, load::Plan, load::Posted, seed::World, watch::gauge};

/// Waits until the sandbox holds a record for every cell and the server reports no due hour;
/// how long that took, or `None` when it did not happen within the wait.
pub(super) async fn wait_drained(
    aws: &AwsSandbox,
    url: &str,
    plan: &Plan,
    args: &DayArgs,
) -> Option<Duration> {
    let started = Instant::now();
    let limit = Duration::from_secs(600.max(30 * args.flush_interval));
    let end = plan.hours.last().map(|h| *h + time::Duration::hours(1))?;
    let http = reqwest::Client::new();
    while started.elapsed() < limit {
        if aws.metered_records_before(end) >= plan.cells() {
            let due = match http.get(format!("{url}/metrics")).send().await {
                Ok(answer) => answer.text().await.ok(),
                Err(_) => None,
            };
            if due.and_then(|text| gauge(&text, "marketlink_usage_due_hours ")) == Some(0.0) {
                return Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// The ledger against what was acknowledged.
pub(super) struct Verdict {
    pub cells: usize,
    pub acknowledged_units: u64,
    pub billed_units: u64,
    /// Cells billed short and the units missing.
    pub short_cells: usize,
    pub lost_units: u64,
    /// Cells billed more than acknowledged, and records of no cell with a quantity.
    pub over_cells: usize,
    pub duplicated_units: u64,
    /// Records for hours without usage (zero-filled hours): must be 0.
    pub zero_records: usize,
    /// Per record: marketplace acceptance − max(acknowledged, hour settled).
    pub worst_wait: Duration,
    pub p99_wait: Duration,
}

impl Verdict {
    pub(super) fn of(aws: &AwsSandbox, plan: &Plan, world: &World, posted: &Posted) -> Self {
        let mut billed = vec![0u64; plan.cells()];
        let mut waits = Vec::with_capacity(plan.cells());
        let (mut zero_records, mut stray_units) = (0, 0u64);
        for record in aws.metered_records() {
            let units = record.quantity.parse::<f64>().unwrap_or(f64::NAN) as u64;
            let sub = record
                .customer_identifier
                .as_ref()
                .and_then(|c| world.by_customer.get(c));
            let hour = plan.hours.iter().position(|h| *h == record.hour);
            let (Some(&sub), Some(hour)) = (sub, hour) else {
                if units == 0 {
                    zero_records += 1;
                }
                stray_units += units;
                continue;
            };
            let cell = plan.cell_of(sub, hour);
            billed[cell] += units;
            let acknowledged = from_millis(posted.acknowledged_at[plan.request_of(cell)]);
            let since = acknowledged.max(plan.due[hour]);
            waits.push((record.accepted_at - since).max(time::Duration::ZERO));
        }
        waits.sort_unstable();
        let mut verdict = Self {
            cells: plan.cells(),
            acknowledged_units: 0,
            billed_units: billed.iter().sum::<u64>() + stray_units,
            short_cells: 0,
            lost_units: 0,
            over_cells: 0,
            duplicated_units: stray_units,
            zero_records,
            worst_wait: waits.last().map_or(Duration::MAX, |w| w.unsigned_abs()),
            p99_wait: waits
                .get(waits.len().saturating_sub(1) * 99 / 100)
                .map_or(Duration::MAX, |w| w.unsigned_abs()),
        };
        for (cell, &got) in billed.iter().enumerate() {
            let expected = plan.units(cell);
            verdict.acknowledged_units += expected;
            if got < expected {
                verdict.short_cells += 1;
                verdict.lost_units += expected - got;
            } else if got > expected {
                verdict.over_cells += 1;
                verdict.duplicated_units += got - expected;
            }
        }
        verdict
    }

    pub(super) fn exact(&self) -> bool {
        self.lost_units == 0 && self.duplicated_units == 0
    }

    pub(super) fn print(&self, flush_interval: u64) {
        println!(
            "  ledger:           {} units acknowledged, {} billed over {} subscription-hours; \
             {} short ({} units), {} over ({} units); {} zero records of other hours",
            self.acknowledged_units,
            self.billed_units,
            self.cells,
            self.short_cells,
            self.lost_units,
            self.over_cells,
            self.duplicated_units,
            self.zero_records
        );
        println!(
            "  settled → billed: p99 {:.1?}, worst {:.1?} (flush interval {flush_interval} s)",
            self.p99_wait, self.worst_wait
        );
    }
}

fn from_millis(millis: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
