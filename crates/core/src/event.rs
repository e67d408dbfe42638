//! What marketplaces tell us, once authenticated and confirmed, in one vocabulary.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{Alias, Entitlement, ExternalRef, Lifecycle, PlanId, Term};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A status change (subscribe-success, Suspend, unsubscribe-pending, ...).
    Lifecycle {
        event: Lifecycle,
        reason: Option<String>,
    },
    PlanChanged {
        plan_id: PlanId,
    },
    QuantityChanged {
        quantity: u32,
    },
    Renewed {
        term: Option<Term>,
    },
    /// The contract's entitlements as read back from the marketplace (the full set).
    EntitlementsChanged {
        entitlements: Vec<Entitlement>,
    },
    /// The subscription continues under a new licence (AWS renewal or replacement with a new
    /// LicenseArn): metering and entitlement reads use it from now on.
    Relicensed {
        license_arn: String,
    },
    /// The marketplace asks us to accept or refuse a change (Azure in-progress operation).
    ChangeRequested {
        operation_id: String,
        plan_id: Option<PlanId>,
        quantity: Option<u32>,
        /// When the marketplace stops waiting for our answer and settles on its own
        /// (Microsoft: 10 s after the webhook arrived, then the change is accepted). Counted
        /// from the message's arrival, not from when we get round to answering.
        #[serde(default, with = "time::serde::rfc3339::option")]
        answer_by: Option<OffsetDateTime>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketplaceEvent {
    pub subscription: ExternalRef,
    /// When the marketplace says it happened; used to ignore stale, out-of-order deliveries.
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    pub kind: EventKind,
    /// Extra facts the provider learned (plan, free trial) for a subscription we have not seen.
    #[serde(default)]
    pub free_trial: Option<bool>,
    /// Names of the subscription the provider learned from this message (a renewal's agreement
    /// id, a new licence); the engine records them so later messages find the subscription.
    #[serde(default)]
    pub aliases: Vec<Alias>,
}
