//! Buyer accounts: who is signed in, as the store knows them now.

use marketlink_core::{TenantId, User, UserId};
use marketlink_store::StoreError;

use crate::Engine;

impl Engine {
    /// The user a session names, if they still exist and still belong to `tenant`. A session
    /// whose user was removed (or moved to another tenant) opens nothing any more, even though
    /// its cookie is still valid.
    pub async fn signed_in_user(
        &self,
        user: UserId,
        tenant: TenantId,
    ) -> Result<Option<User>, StoreError> {
        match self.store.get_user(user).await {
            Ok(found) if found.tenant_id == tenant => Ok(Some(found)),
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }
}
