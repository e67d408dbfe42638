//! What we remember about a change request we answered, so that reading back what the
//! marketplace settled on (now, or later from an outbox job) knows what it is checking.

use marketlink_core::{MarketplaceView, PlanId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// A refused change is checked again this long after the refusal, since Microsoft may apply
/// it asynchronously.
pub(crate) const REFUSAL_RECHECK: time::Duration = time::Duration::minutes(10);

/// Why we follow a marketplace operation we answered (or declined to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "case", rename_all = "snake_case")]
pub(crate) enum Why {
    /// The marketplace settled the change before our answer (auto-accepted after its window,
    /// or answered otherwise). `policy_refusal`: our policy would have refused it.
    SettledFirst {
        reason: String,
        policy_refusal: Option<String>,
    },
    /// We refused the change to these terms; the marketplace should keep the old ones.
    Refused {
        reason: String,
        #[serde(default)]
        plan_id: Option<PlanId>,
        #[serde(default)]
        quantity: Option<u32>,
    },
    /// Our policy declined a Reinstate: the subscription was deleted at the marketplace.
    ReinstateDeclined,
}

impl Why {
    /// The timeline kind of the entry saying how the operation was settled.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::SettledFirst { .. } => "change_settled_by_marketplace",
            Self::Refused { .. } => "change_refusal_checked",
            Self::ReinstateDeclined => "reinstate_declined",
        }
    }

    /// The timeline outcome: the operation's `status`, the subscription as the marketplace
    /// has it (`view`), and whether its terms differ from ours (`changed`, being applied).
    pub(crate) fn outcome(&self, status: &str, view: &MarketplaceView, changed: bool) -> String {
        match self {
            Self::SettledFirst { policy_refusal, .. } if changed => match policy_refusal {
                Some(refusal) => format!(
                    "auto-accepted by the marketplace before our answer (operation {status}); \
                     applied, although our policy would have refused: {refusal}"
                ),
                None => format!(
                    "auto-accepted by the marketplace before our answer (operation {status}); applied"
                ),
            },
            Self::SettledFirst { .. } => {
                format!("settled by the marketplace (operation {status}); nothing to apply")
            }
            Self::Refused {
                plan_id, quantity, ..
            } => {
                let requested = plan_id.is_some() || quantity.is_some();
                let despite = requested
                    && (plan_id.is_none() || *plan_id == view.plan_id)
                    && (quantity.is_none() || *quantity == view.quantity);
                match (despite, changed) {
                    (true, true) => format!("applied despite our refusal (operation {status})"),
                    // A later check of a refusal whose change was applied here already.
                    (true, false) => format!(
                        "applied despite our refusal (operation {status}); applied here before"
                    ),
                    (false, _) => {
                        format!("refusal held (operation {status}): the marketplace kept the terms")
                    }
                }
            }
            Self::ReinstateDeclined => format!(
                "reinstatement declined by policy: cancelled at the marketplace (operation {status})"
            ),
        }
    }

    /// What the vendor webhooks of the applied terms carry, so vendors can tell these apart.
    pub(crate) fn marker(&self) -> Map<String, Value> {
        let mut marker = Map::new();
        match self {
            Self::SettledFirst { policy_refusal, .. } => {
                marker.insert("auto_accepted".into(), Value::Bool(true));
                if let Some(refusal) = policy_refusal {
                    marker.insert("policy_refusal".into(), json!(refusal));
                }
            }
            Self::Refused { reason, .. } => {
                marker.insert("applied_despite_refusal".into(), Value::Bool(true));
                marker.insert("refusal_reason".into(), json!(reason));
            }
            Self::ReinstateDeclined => {
                marker.insert("reason".into(), json!("reinstate_declined"));
            }
        }
        marker
    }
}

/// What to do once an answered change request is recorded.
#[derive(Debug, Clone)]
pub(crate) struct AfterAnswer {
    pub operation_id: String,
    pub why: Why,
}
