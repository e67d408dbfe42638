//! What we remember about a change request we answered, so that reading back what the
//! marketplace settled on (now, or later from an outbox job) knows what it is checking.

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
    /// We refused the change; the marketplace should keep the old terms.
    Refused { reason: String },
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

    /// The timeline outcome, given whether the marketplace's terms differ from ours.
    pub(crate) fn outcome(&self, status: &str, changed: bool) -> String {
        match (self, changed) {
            (Self::SettledFirst { policy_refusal, .. }, true) => match policy_refusal {
                Some(refusal) => format!(
                    "auto-accepted by the marketplace before our answer (operation {status}); \
                     applied, although our policy would have refused: {refusal}"
                ),
                None => format!(
                    "auto-accepted by the marketplace before our answer (operation {status}); applied"
                ),
            },
            (Self::SettledFirst { .. }, false) => {
                format!("settled by the marketplace (operation {status}); nothing to apply")
            }
            (Self::Refused { .. }, true) => {
                format!("applied despite our refusal (operation {status})")
            }
            (Self::Refused { .. }, false) => {
                format!("refusal held (operation {status}): the marketplace kept the terms")
            }
            (Self::ReinstateDeclined, _) => format!(
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
            Self::Refused { reason } => {
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
