//! Group commit of usage ingest: concurrent requests share one transaction.

use std::sync::{Arc, Mutex};

use marketlink_store::{Backend, IngestOutcome, NewUsageEvent, Store, StoreError};
use time::OffsetDateTime;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// How many waiting requests one group commit takes at most.
const MAX_GROUP: usize = 64;

/// Group commits in flight at once on PostgreSQL (each holds one pooled connection).
const POSTGRES_WRITERS: usize = 4;

/// Requests waiting for the writer at most. Beyond it the database is not keeping up: the
/// caller is answered "unavailable" (503 with Retry-After) at once instead of queueing
/// without bound in memory.
const MAX_WAITING: usize = 1024;

/// A request waiting for the writer.
struct Pending {
    events: Vec<NewUsageEvent>,
    now: OffsetDateTime,
    reply: oneshot::Sender<Result<IngestOutcome, StoreError>>,
}

/// Group commit for usage ingest: a writer takes every request that is waiting when it gets to
/// write and stores them in one transaction ([`Store::usage_ingest_group`]; each batch still
/// all or nothing on its own). Concurrent API requests thus share a commit instead of queueing
/// for SQLite's write lock (whose busy handler sleeps in milliseconds) or paying a WAL flush
/// each on PostgreSQL. A request is answered only after its group committed, and the write
/// goes on even if the caller gives up waiting (a dropped HTTP request), so a group is never
/// left half-answered.
///
/// SQLite has one writer, so groups commit one after another. PostgreSQL commits
/// [`POSTGRES_WRITERS`] groups at once: a request only appends to the ledger (ADR 0010), so
/// concurrent groups share no rows and do not queue on one another's locks.
#[derive(Default)]
pub(crate) struct IngestWriter {
    queue: Mutex<Option<mpsc::Sender<Pending>>>,
}

impl IngestWriter {
    pub(super) async fn write(
        &self,
        store: &Store,
        events: Vec<NewUsageEvent>,
        now: OffsetDateTime,
    ) -> Result<IngestOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending { events, now, reply };
        {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            let pending = match queue.as_ref() {
                Some(sender) => match sender.try_send(pending) {
                    Ok(()) => None,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        metrics::counter!("marketlink_usage_ingest_refused_total").increment(1);
                        return Err(StoreError::unavailable(format!(
                            "{MAX_WAITING} usage requests are already waiting for the database"
                        )));
                    }
                    // The writer is gone (its runtime shut down): start another.
                    Err(mpsc::error::TrySendError::Closed(back)) => Some(back),
                },
                None => Some(pending),
            };
            if let Some(pending) = pending {
                let (sender, receiver) = mpsc::channel(MAX_WAITING);
                tokio::spawn(run_writer(store.clone(), receiver));
                // Cannot fail: the receiver is alive in the task just spawned, and empty.
                let _ = sender.try_send(pending);
                *queue = Some(sender);
            }
        }
        wait(answer).await
    }
}

async fn wait(
    answer: oneshot::Receiver<Result<IngestOutcome, StoreError>>,
) -> Result<IngestOutcome, StoreError> {
    answer.await.unwrap_or_else(|_| {
        Err(StoreError::unavailable(
            "the usage writer stopped before answering".into(),
        ))
    })
}

async fn run_writer(store: Store, mut queue: mpsc::Receiver<Pending>) {
    let writers = Arc::new(Semaphore::new(match store.backend() {
        Backend::Sqlite => 1,
        Backend::Postgres => POSTGRES_WRITERS,
    }));
    loop {
        // Wait for a free writer first: requests that arrive meanwhile join the next group.
        let Ok(writer) = Arc::clone(&writers).acquire_owned().await else {
            return;
        };
        let mut group = Vec::with_capacity(MAX_GROUP);
        if queue.recv_many(&mut group, MAX_GROUP).await == 0 {
            return;
        }
        let store = store.clone();
        tokio::spawn(async move {
            commit_group(&store, group).await;
            drop(writer);
        });
    }
}

/// Stores one group and answers each of its requests.
async fn commit_group(store: &Store, mut group: Vec<Pending>) {
    let batches: Vec<(&[NewUsageEvent], OffsetDateTime)> =
        group.iter().map(|p| (p.events.as_slice(), p.now)).collect();
    let results = store.usage_ingest_group(&batches).await;
    drop(batches);
    match results {
        Ok(results) => {
            for (pending, result) in group.drain(..).zip(results) {
                // The caller may have gone; its batch is stored all the same.
                let _ = pending.reply.send(result);
            }
        }
        Err(error) => {
            // Nothing of the group was stored. The first caller gets the error itself, the
            // others its description (a store error is not cloneable).
            let message = format!("the shared commit failed: {error}");
            let mut first = Some(error);
            for pending in group.drain(..) {
                let error = first
                    .take()
                    .unwrap_or_else(|| StoreError::unavailable(message.clone()));
                let _ = pending.reply.send(Err(error));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose queue nobody drains (the database stalled): once `MAX_WAITING`
    /// requests wait, the next is refused at once, as unavailable.
    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let dir = std::env::temp_dir().join(format!("writer-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite:{}", dir.join("w.db").display());
        let store = Store::connect(&url, &Default::default()).await.unwrap();
        let (sender, _stalled) = mpsc::channel(MAX_WAITING);
        let writer = Arc::new(IngestWriter {
            queue: Mutex::new(Some(sender)),
        });
        let now = time::macros::datetime!(2026-12-07 10:00 UTC);
        let mut waiting = Vec::new();
        for _ in 0..MAX_WAITING {
            let (writer, store) = (writer.clone(), store.clone());
            waiting.push(tokio::spawn(async move {
                writer.write(&store, Vec::new(), now).await
            }));
        }
        // Let every one of them reach the queue.
        while writer
            .queue
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|s| s.capacity() > 0)
        {
            tokio::task::yield_now().await;
        }
        let refused = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            writer.write(&store, Vec::new(), now),
        )
        .await
        .expect("refused at once, not queued");
        assert!(
            matches!(&refused, Err(e) if e.is_unavailable()),
            "{refused:?}"
        );
        for task in waiting {
            task.abort();
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
