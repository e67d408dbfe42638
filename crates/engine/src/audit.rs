//! The audit log: who changed what, written after the change itself succeeded.
//!
//! Writing the entry is best effort: the change has happened, so a failed write is logged
//! loudly instead of turning the operator's success into an error.

use marketlink_store::{AuditEntry, StoreError};

use crate::Engine;

/// Who made a change, as the audit log names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An operator signed in to the admin portal, by email (`admin:<email>`).
    Operator(String),
    /// A vendor API key, by prefix (`key:<prefix>`).
    ApiKey(String),
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Operator(email) => write!(f, "admin:{email}"),
            Self::ApiKey(prefix) => write!(f, "key:{prefix}"),
        }
    }
}

impl Engine {
    /// Records that `actor` did `action` on `target`.
    pub async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        target: Option<&str>,
        detail: serde_json::Value,
    ) {
        let entry = AuditEntry::new(
            actor.to_string(),
            action,
            target.map(str::to_owned),
            detail,
            self.clock.now(),
        );
        if let Err(error) = self.store.audit(&entry).await {
            tracing::error!(%error, "cannot write the audit log");
        }
    }

    /// The audit log, newest first, optionally of one actor (`admin:ops@…`, `key:…`, `cli`).
    pub async fn audit_log(
        &self,
        actor: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.store.audit_log(actor, limit).await
    }
}
