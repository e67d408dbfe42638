//! Crash soak (issue 21): marketlink runs as its own processes against both marketplace
//! sandboxes (in this process) and is killed with SIGKILL at random moments while the
//! vendor's product reports usage and the marketplaces change subscriptions. Afterwards the
//! marketplaces' own ledgers and states must match what marketlink acknowledged: nothing lost,
//! nothing billed twice, every lifecycle change applied once.
//!
//! The short version runs with the test suite (`SOAK_SECS`, 30 s by default, per backend); the
//! long one is `SOAK_SECS=900 cargo test -p marketlink-e2e --test soak -- --nocapture` (see
//! docs/operations.md, "Crash soak"). `SOAK_SEED` repeats a run.

mod buyers;
mod drive;
mod fleet;
mod stack;
mod verdict;

use std::{
    sync::{Mutex, atomic::AtomicBool, atomic::Ordering},
    time::{Duration, Instant},
};

use buyers::{Bought, CLASSIC, CONCURRENT};
use drive::{Acknowledged, Kills, Rng};
use marketlink_e2e::{drop_postgres_database, fresh_postgres_database, postgres_skipped};
use marketlink_sandbox::aws::DeliveryChaos;
use stack::SoakStack;

/// How long replicas are killed for, from `SOAK_SECS`.
fn soak_duration() -> Duration {
    let secs = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// How long the marketplaces may take to agree with marketlink after the last kill: leases
/// (30 s here, the least allowed) run out, retries come due, the reconciler (every 5 s) catches up.
const CONVERGE_LIMIT: Duration = Duration::from_secs(120);

/// The soak's subscriptions: some billed for usage, some moved through their lifecycle.
struct Subscriptions {
    billing: Vec<Bought>,
    lifecycle: Vec<Bought>,
}

async fn buy(stack: &SoakStack) -> Subscriptions {
    let billing = vec![
        buyers::aws(stack, CLASSIC, 0).await,
        buyers::aws(stack, CLASSIC, 1).await,
        buyers::azure(stack, 0, 5).await,
        buyers::azure(stack, 1, 5).await,
    ];
    let lifecycle = vec![
        buyers::aws(stack, CLASSIC, 2).await,
        buyers::aws(stack, CLASSIC, 3).await,
        buyers::aws(stack, CONCURRENT, 4).await,
        buyers::aws(stack, CONCURRENT, 5).await,
        buyers::azure(stack, 2, 5).await,
        buyers::azure(stack, 3, 5).await,
        buyers::azure(stack, 4, 5).await,
    ];
    Subscriptions { billing, lifecycle }
}

/// First half: usage arrives for hours that stay open (a long settle time), replicas die while
/// ingesting it and applying notifications. Second half: the hours are released for delivery
/// one at a time (a replica restarts with a shorter settle time, the others at their next
/// start), while replicas keep dying and the marketplaces answer late, throttle or fail.
/// Returns the faults injected.
async fn kill_in_two_halves(
    stack: &SoakStack,
    seed: u64,
    stop: &AtomicBool,
    kills: &Kills,
) -> usize {
    let half = soak_duration() / 2;
    drive::kill_replicas(stack, Rng::new(seed ^ 3), half, kills).await;
    let (faults, (), ()) = tokio::join!(
        drive::fault_metering(stack, Rng::new(seed ^ 4), stop),
        async {
            drive::kill_replicas(stack, Rng::new(seed ^ 5), half, kills).await;
            stop.store(true, Ordering::Relaxed);
        },
        async {
            let step = half / (drive::HOURS_BACK as u32);
            for back in (2..=drive::HOURS_BACK).rev() {
                let settle = drive::settle_releasing(back).to_string();
                stack
                    .fleet
                    .set_env("MARKETLINK_METERING__SETTLE_SECS", &settle);
                if stack.fleet.kill(0) {
                    kills.total.fetch_add(1, Ordering::Relaxed);
                }
                stack.fleet.start(0).await;
                tokio::time::sleep(step).await;
            }
            // Every replica delivers what is left once it restarts with the last setting.
        },
    );
    faults
}

async fn soak(name: &str, stack: SoakStack) {
    let seed = drive::seed();
    let subs = buy(&stack).await;
    // What AWS does now and then: a message twice, out of order, late.
    stack.aws.set_delivery_chaos(Some(DeliveryChaos {
        seed,
        duplicate_percent: 20,
        reorder: true,
        max_delay_ms: 500,
    }));
    let stop = AtomicBool::new(false);
    let acknowledged = Mutex::new(Acknowledged::default());
    let kills = Kills::default();
    let started = Instant::now();
    let (_, _, changes, faults) = tokio::join!(
        drive::report_usage(
            &stack,
            &subs.billing,
            Rng::new(seed),
            0,
            &stop,
            &acknowledged
        ),
        drive::report_usage(
            &stack,
            &subs.billing,
            Rng::new(seed ^ 1),
            1,
            &stop,
            &acknowledged
        ),
        drive::change_subscriptions(&stack, &subs.lifecycle, Rng::new(seed ^ 2), &stop),
        kill_in_two_halves(&stack, seed, &stop, &kills),
    );
    drive::all_up(&stack).await;
    let killed_for = started.elapsed();

    let everything: Vec<Bought> = subs
        .billing
        .iter()
        .chain(&subs.lifecycle)
        .cloned()
        .collect();
    let acknowledged = acknowledged.into_inner().expect("ledger");
    let (usage, lifecycle) = loop {
        let usage = verdict::usage(&stack, &subs.billing, &acknowledged).await;
        let lifecycle = verdict::lifecycle(&stack, &everything).await;
        if (usage.settled() && lifecycle.out_of_step.is_empty())
            || started.elapsed() > killed_for + CONVERGE_LIMIT
        {
            break (usage, lifecycle);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let converged = started.elapsed() - killed_for;
    println!(
        "soak {name} (seed {seed}): {:.0} s of kills, {} kills ({} while usage was claimed for \
         delivery, {} while notifications waited); usage: {} events in {} posts ({} re-sent, {} events \
         refused as their hour had been sent), {faults} marketplace faults, {} units acknowledged, {} billed, lost {}, duplicated {}, dead or mismatched hours {}; \
         lifecycle: {changes} marketplace changes, {} applied from messages, {}/{} subscriptions \
         in step, applied twice {}; converged {:.1} s after the last kill (limit {:.0} s)",
        killed_for.as_secs_f64(),
        kills.total.load(Ordering::Relaxed),
        kills.holding_usage.load(Ordering::Relaxed),
        kills.holding_notifications.load(Ordering::Relaxed),
        acknowledged.events,
        acknowledged.posts,
        acknowledged.resent,
        acknowledged.refused,
        usage.acknowledged_units,
        usage.billed_units,
        usage.lost_units,
        usage.duplicated_units,
        usage.dead_or_mismatched_hours,
        lifecycle.applied,
        lifecycle.in_step,
        everything.len(),
        lifecycle.applied_twice.len(),
        converged.as_secs_f64(),
        CONVERGE_LIMIT.as_secs_f64(),
    );
    let logs: Vec<String> = (0..stack.fleet.ports().len())
        .map(|i| stack.fleet.log_tail(i))
        .collect();
    assert!(
        kills.total.load(Ordering::Relaxed) > 0,
        "the soak killed nothing"
    );
    assert_eq!(
        usage.lost_units,
        0,
        "usage lost; replica logs:\n{}",
        logs.join("\n")
    );
    assert_eq!(usage.duplicated_units, 0, "usage billed twice");
    assert_eq!(
        usage.dead_or_mismatched_hours, 0,
        "hours dead-lettered or mismatched"
    );
    assert!(
        lifecycle.out_of_step.is_empty(),
        "out of step with the marketplace: {:#?}\nreplica logs:\n{}",
        lifecycle.out_of_step,
        logs.join("\n")
    );
    assert!(
        lifecycle.applied_twice.is_empty(),
        "{:#?}",
        lifecycle.applied_twice
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_replica_on_sqlite_killed_at_random() {
    let stack = stack::start(None, 1, 5).await;
    soak("sqlite, 1 replica", stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_postgres_killed_at_random() {
    if postgres_skipped() {
        return;
    }
    let database = fresh_postgres_database().await;
    let stack = stack::start(Some(database.clone()), 2, 5).await;
    soak("postgres, 2 replicas", stack).await;
    drop_postgres_database(&database).await;
}
