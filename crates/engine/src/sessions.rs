//! Browser sessions (issue 20): the web front end's sessions live in the store, so ending
//! one ends it on every device. The data is the front end's; the engine passes it through,
//! ends sessions when their user leaves, and prunes expired ones in the background.

use marketlink_core::UserId;
use marketlink_store::{SessionRecord, StoreError, StoredSession};

use crate::Engine;

/// Expired sessions deleted per statement while pruning.
const PRUNE_BATCH: u32 = 500;

impl Engine {
    /// The live session whose id hashes to `id_hash`.
    pub async fn session(&self, id_hash: &str) -> Result<Option<StoredSession>, StoreError> {
        self.store.live_session(id_hash, self.clock.now()).await
    }

    /// Stores a new session, ending `replaces` (the session it takes over from) with it.
    pub async fn start_session(
        &self,
        record: &SessionRecord,
        replaces: Option<&str>,
    ) -> Result<(), StoreError> {
        self.store
            .insert_session(record, replaces, self.clock.now())
            .await
    }

    /// Writes a session back; false when it ended meanwhile (it stays ended).
    pub async fn update_session(&self, record: &SessionRecord) -> Result<bool, StoreError> {
        self.store.update_session(record, self.clock.now()).await
    }

    /// Ends one session.
    pub async fn end_session(&self, id_hash: &str) -> Result<(), StoreError> {
        self.store.delete_session(id_hash).await.map(|_| ())
    }

    /// Ends every session of `user`, on every device.
    pub async fn end_user_sessions(&self, user: UserId) -> Result<u64, StoreError> {
        let ended = self.store.delete_user_sessions(user).await?;
        tracing::info!(%user, ended, "user signed out everywhere");
        Ok(ended)
    }

    /// Ends every session of the operator with this email.
    pub async fn end_operator_sessions(&self, email: &str) -> Result<u64, StoreError> {
        let ended = self.store.delete_operator_sessions(email).await?;
        tracing::info!(operator = %email, ended, "operator signed out everywhere");
        Ok(ended)
    }

    /// Deletes every session expired by now, a batch at a time; returns how many.
    pub async fn prune_sessions(&self) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let mut pruned = 0;
        loop {
            let batch = self.store.prune_sessions(now, PRUNE_BATCH).await?;
            pruned += batch;
            if batch < u64::from(PRUNE_BATCH) {
                return Ok(pruned);
            }
        }
    }
}
