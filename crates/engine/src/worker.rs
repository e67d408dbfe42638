//! Background loops, each stopped by the shared cancellation token and awaited by name.

use std::{sync::Arc, time::Duration};

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
        }
    }
}

/// A running background task and its name, for an orderly shutdown log.
pub struct Worker {
    pub name: &'static str,
    pub handle: JoinHandle<()>,
}

/// Starts the inbox, outbox, queue-polling, usage-flushing and (when set) reconciliation loops.
pub fn spawn(
    engine: Arc<Engine>,
    settings: WorkerSettings,
    shutdown: CancellationToken,
) -> Vec<Worker> {
    let inbox = {
        let engine = engine.clone();
        let settings = settings.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                match engine
                    .process_inbox(settings.inbox_batch, &settings.backoff)
                    .await
                {
                    Ok(run)
                        if run.processed + run.retried + run.buried
                            == settings.inbox_batch as usize =>
                    {
                        // A full batch: there may be more right away.
                        continue;
                    }
                    Ok(_) => {}
                    Err(error) => tracing::error!(error = ?error, "inbox pass failed"),
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = engine.inbox_ready.notified() => {},
                    () = tokio::time::sleep(settings.inbox_interval) => {},
                }
            }
        })
    };
    let pull = {
        let engine = engine.clone();
        let settings = settings.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let taken = tokio::select! {
                    () = shutdown.cancelled() => break,
                    taken = engine.pull_once(settings.pull_batch) => taken,
                };
                if taken > 0 {
                    continue;
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(settings.pull_interval) => {},
                }
            }
        })
    };
    let outbox = {
        let engine = engine.clone();
        let settings = settings.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                match engine
                    .process_outbox(settings.inbox_batch, &settings.backoff)
                    .await
                {
                    Ok(run)
                        if run.done + run.retried + run.buried == settings.inbox_batch as usize =>
                    {
                        continue;
                    }
                    Ok(_) => {}
                    Err(error) => tracing::error!(error = ?error, "outbox pass failed"),
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = engine.outbox_ready.notified() => {},
                    () = tokio::time::sleep(settings.inbox_interval) => {},
                }
            }
        })
    };
    let metering = {
        let engine = engine.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                // Not raced against shutdown: a flush in hand finishes its bookkeeping.
                match engine.flush_usage().await {
                    Ok(run) if run.claimed > 0 || run.zero_created > 0 => {
                        tracing::info!(?run, "usage flushed");
                    }
                    Ok(_) => {}
                    Err(error) => tracing::error!(error = ?error, "usage flush failed"),
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(engine.metering.flush_interval) => {},
                }
            }
        })
    };
    let index = {
        let engine = engine.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = engine.entitlements.sync(&engine.store).await {
                    tracing::warn!(error = ?error, "entitlement index sync failed");
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(settings.index_interval) => {},
                }
            }
        })
    };
    let mut workers = Vec::new();
    if let Some(interval) = settings.reconcile_interval {
        let engine = engine.clone();
        let shutdown = shutdown.clone();
        let run = settings.reconcile;
        workers.push(Worker {
            name: "reconcile",
            handle: tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(interval) => {},
                    }
                    // One replica per interval: the survey reads every subscription from the
                    // marketplaces, whose APIs throttle.
                    let span = time::Duration::try_from(interval).unwrap_or(time::Duration::HOUR);
                    match engine
                        .store
                        .take_periodic_run("reconcile", engine.clock.now(), span)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::debug!("another replica reconciles this interval");
                            continue;
                        }
                        Err(error) => {
                            tracing::error!(error = ?error, "cannot take the reconciliation run");
                            continue;
                        }
                    }
                    match engine.reconcile(&run).await {
                        Ok(report) => tracing::info!(
                            surveyed = report.surveyed,
                            drift = report.items.len(),
                            repaired = report.repaired,
                            report_only = report.report_only,
                            failed = report.failed,
                            "reconciled with the marketplaces"
                        ),
                        Err(error) => tracing::error!(error = ?error, "reconciliation failed"),
                    }
                }
            }),
        });
    }
    workers.extend([
        Worker {
            name: "metering",
            handle: metering,
        },
        Worker {
            name: "entitlement-index",
            handle: index,
        },
        Worker {
            name: "inbox",
            handle: inbox,
        },
        Worker {
            name: "outbox",
            handle: outbox,
        },
        Worker {
            name: "queue-poller",
            handle: pull,
        },
    ]);
    workers
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
