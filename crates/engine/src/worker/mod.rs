//! Background loops, one module each, all stopped by one shared cancellation token and
//! awaited by name.

mod entitlement_index;
mod flusher;
mod inbox;
mod outbox;
mod queue_poller;
mod reconciler;
mod retention;
mod session_pruner;

use std::{future::Future, sync::Arc, time::Duration};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Engine, backoff::Backoff};

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// How often the inbox is checked even without a wake-up (retries come due this way).
    pub inbox_interval: Duration,
    pub inbox_batch: u32,
    /// Pause between queue polls when a poll returned nothing (the poll itself may wait).
    pub pull_interval: Duration,
    pub pull_batch: u32,
    pub backoff: Backoff,
    /// How often the entitlement index loads what changed in the database.
    pub index_interval: Duration,
    /// How often to reconcile with the marketplaces (`None`: never); the first run comes one
    /// interval after start-up.
    pub reconcile_interval: Option<Duration>,
    pub reconcile: crate::reconcile::ReconcileSettings,
    /// How often expired browser sessions are deleted.
    pub session_prune_interval: Duration,
    /// What is pruned, and how often (`[retention]`).
    pub retention: crate::retention::RetentionSettings,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            inbox_interval: Duration::from_secs(1),
            inbox_batch: 50,
            pull_interval: Duration::from_secs(1),
            pull_batch: 10,
            backoff: Backoff::default(),
            index_interval: Duration::from_millis(500),
            reconcile_interval: None,
            reconcile: crate::reconcile::ReconcileSettings::default(),
            session_prune_interval: Duration::from_secs(600),
            retention: crate::retention::RetentionSettings::default(),
        }
    }
}

/// A running background task and its name, for an orderly shutdown log.
pub struct Worker {
    pub name: &'static str,
    pub handle: JoinHandle<()>,
}

/// Starts the inbox, outbox, queue-polling, usage-flushing, entitlement-index, session-pruning
/// and (when set) reconciliation loops, all stopped by `shutdown`.
pub fn spawn(
    engine: Arc<Engine>,
    settings: WorkerSettings,
    shutdown: CancellationToken,
) -> Vec<Worker> {
    let mut workers = Vec::new();
    if let Some(interval) = settings.reconcile_interval {
        workers.push(start(
            "reconcile",
            reconciler::run(
                engine.clone(),
                interval,
                settings.reconcile,
                shutdown.clone(),
            ),
        ));
    }
    workers.extend([
        start(
            "retention",
            retention::run(engine.clone(), settings.retention.clone(), shutdown.clone()),
        ),
        start("metering", flusher::run(engine.clone(), shutdown.clone())),
        start(
            "session-pruner",
            session_pruner::run(
                engine.clone(),
                settings.session_prune_interval,
                shutdown.clone(),
            ),
        ),
        start(
            "entitlement-index",
            entitlement_index::run(engine.clone(), settings.index_interval, shutdown.clone()),
        ),
        start(
            "inbox",
            inbox::run(engine.clone(), settings.clone(), shutdown.clone()),
        ),
        start(
            "outbox",
            outbox::run(engine.clone(), settings.clone(), shutdown.clone()),
        ),
        start(
            "queue-poller",
            queue_poller::run(engine, settings, shutdown),
        ),
    ]);
    workers
}

/// Whether this replica takes this `interval`'s run of the periodic job `name` (ADR 0007):
/// one replica per interval does the job. A database that cannot say counts as no.
async fn take_periodic(engine: &Engine, name: &str, interval: Duration) -> bool {
    let span = time::Duration::try_from(interval).unwrap_or(time::Duration::HOUR);
    match engine
        .store
        .take_periodic_run(name, engine.clock.now(), span)
        .await
    {
        Ok(taken) => {
            if !taken {
                tracing::debug!(job = name, "another replica runs this interval's job");
            }
            taken
        }
        Err(error) => {
            tracing::error!(job = name, error = ?error, "cannot take the periodic job's run");
            false
        }
    }
}

fn start(name: &'static str, task: impl Future<Output = ()> + Send + 'static) -> Worker {
    Worker {
        name,
        handle: tokio::spawn(task),
    }
}

/// Waits for every worker to stop, logging each.
pub async fn join(workers: Vec<Worker>) {
    for worker in workers {
        match worker.handle.await {
            Ok(()) => tracing::info!(worker = worker.name, "worker stopped"),
            Err(error) => tracing::error!(worker = worker.name, %error, "worker ended abnormally"),
        }
    }
}
