//! Group commit of usage ingest: concurrent requests share one transaction.

use std::sync::{Arc, Mutex};

use marketlink_store::{Backend, IngestOutcome, NewUsageEvent, Store, StoreError};
use time::OffsetDateTime;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// How many waiting requests one group commit takes at most.
const MAX_GROUP: usize = 64;

/// Group commits in flight at once on PostgreSQL (each holds one pooled connection).
const POSTGRES_WRITERS: usize = 4;

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
    queue: Mutex<Option<mpsc::UnboundedSender<Pending>>>,
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
                Some(sender) => match sender.send(pending) {
                    Ok(()) => None,
                    // The writer is gone (its runtime shut down): start another.
                    Err(mpsc::error::SendError(back)) => Some(back),
                },
                None => Some(pending),
            };
            if let Some(pending) = pending {
                let (sender, receiver) = mpsc::unbounded_channel();
                tokio::spawn(run_writer(store.clone(), receiver));
                // Cannot fail: the receiver is alive in the task just spawned.
                let _ = sender.send(pending);
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

async fn run_writer(store: Store, mut queue: mpsc::UnboundedReceiver<Pending>) {
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
