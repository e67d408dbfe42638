//! `interpret`: a Procurement message is a pointer, so the entitlement is read again and the
//! event follows from (eventType, state), as Google's codelab does (gcp.md §2, S9 step 5).
//!
//! | eventType | state re-read | events |
//! |---|---|---|
//! | CREATION_REQUESTED, OFFER_ACCEPTED | ACTIVATION_REQUESTED | PlanChanged (a pending subscription the sign-up meets); account not there yet: retried |
//! | any known | ACTIVE (incl. ACTIVE, CANCELLATION_REVERTED, RENEWED) | Activate, PlanChanged, Renewed when the offer has a term |
//! | PLAN_CHANGE_REQUESTED | PENDING_PLAN_CHANGE_APPROVAL | ChangeRequested (operation id = the pending plan) |
//! | PLAN_CHANGED | ACTIVE | PlanChanged |
//! | PENDING_CANCELLATION, CANCELLING | PENDING_CANCELLATION | Renewed with the term's end (usable until then) |
//! | CANCELLED, OFFER_ENDED | CANCELLED | Cancel |
//! | DELETED, or the entitlement is gone (404) | – | none (S9: no-op) |
//! | ACCOUNT_* and unknown types | – | none, logged |

use marketlink_core::{
    AuthenticatedMessage, EventKind, Lifecycle, MarketplaceEvent, PlanId, ProviderError, Term,
};

use crate::{GcpProvider, model::Entitlement, pubsub::Notice};

/// The event types Google documents (S9 enum; S12/S15/S16 for the newer ones). Others are
/// kept in the inbox and ignored: Google adds types.
const KNOWN: &[&str] = &[
    "ENTITLEMENT_CREATION_REQUESTED",
    "ENTITLEMENT_OFFER_ACCEPTED",
    "ENTITLEMENT_ACTIVE",
    "ENTITLEMENT_PLAN_CHANGE_REQUESTED",
    "ENTITLEMENT_PLAN_CHANGED",
    "ENTITLEMENT_PLAN_CHANGE_CANCELLED",
    "ENTITLEMENT_PENDING_CANCELLATION",
    "ENTITLEMENT_CANCELLING",
    "ENTITLEMENT_CANCELLATION_REVERTED",
    "ENTITLEMENT_CANCELLED",
    "ENTITLEMENT_RENEWED",
    "ENTITLEMENT_OFFER_ENDED",
    "ENTITLEMENT_DELETED",
];

impl GcpProvider {
    pub(crate) async fn interpret_message(
        &self,
        message: &AuthenticatedMessage,
    ) -> Result<Vec<MarketplaceEvent>, ProviderError> {
        let notice: Notice = serde_json::from_value(message.payload.clone()).map_err(|e| {
            ProviderError::Rejected {
                code: "malformed".into(),
                message: format!("stored message is not a Procurement message: {e}"),
            }
        })?;
        let Some(pointer) = notice.entitlement.as_ref() else {
            // Account messages change no subscription; sign-up and activate read the account.
            let account = notice
                .account
                .as_ref()
                .map(|a| a.id.as_str())
                .unwrap_or_default();
            tracing::info!(event = %notice.event_type, account, "Google account message: nothing to apply");
            return Ok(Vec::new());
        };
        if !KNOWN.contains(&notice.event_type.as_str()) {
            tracing::warn!(event = %notice.event_type, "unknown Google event type kept and ignored");
            return Ok(Vec::new());
        }
        let entitlement = match self.procurement().entitlement(&pointer.id).await {
            Ok(e) => e,
            Err(ProviderError::NotFound(_)) => {
                tracing::info!(entitlement = %pointer.id, "entitlement gone at Google: nothing to apply");
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        if entitlement.state == "ENTITLEMENT_ACTIVATION_REQUESTED" {
            self.require_account(&entitlement).await?;
        }
        Ok(self.events_for(&entitlement))
    }

    /// Nacks a message about an account Google has not shown us yet (codelab; S11).
    async fn require_account(&self, entitlement: &Entitlement) -> Result<(), ProviderError> {
        match self.procurement().account(entitlement.account_id()).await {
            Ok(_) => Ok(()),
            Err(ProviderError::NotFound(_)) => Err(ProviderError::retryable(format!(
                "account {} of entitlement {} not there yet",
                entitlement.account_id(),
                entitlement.id()
            ))),
            Err(e) => Err(e),
        }
    }

    /// The events the entitlement's current state stands for.
    pub(crate) fn events_for(&self, entitlement: &Entitlement) -> Vec<MarketplaceEvent> {
        let occurred_at = entitlement.update_time.unwrap_or_else(|| self.clock.now());
        let event = |kind| MarketplaceEvent {
            subscription: entitlement.external_ref(&self.marketplace),
            occurred_at,
            kind,
            free_trial: None,
            aliases: entitlement.aliases(),
        };
        let plan = entitlement
            .plan_id()
            .map(|plan_id| event(EventKind::PlanChanged { plan_id }));
        let renewed = entitlement
            .term()
            .map(|term| event(EventKind::Renewed { term: Some(term) }));
        let lifecycle = |event_kind| {
            event(EventKind::Lifecycle {
                event: event_kind,
                reason: None,
            })
        };
        match entitlement.state.as_str() {
            "ENTITLEMENT_ACTIVATION_REQUESTED" => plan.into_iter().chain(renewed).collect(),
            "ENTITLEMENT_ACTIVE" | "ENTITLEMENT_PENDING_PLAN_CHANGE" => {
                let mut events = vec![lifecycle(Lifecycle::Activate)];
                events.extend(plan.into_iter().chain(renewed));
                events
            }
            "ENTITLEMENT_PENDING_PLAN_CHANGE_APPROVAL"
                if !entitlement.new_pending_plan.is_empty() =>
            {
                vec![event(EventKind::ChangeRequested {
                    operation_id: entitlement.new_pending_plan.clone(),
                    plan_id: Some(PlanId::new(entitlement.new_pending_plan.clone())),
                    quantity: None,
                    answer_by: None,
                })]
            }
            // Usable until the term ends (S5): the end is what changes.
            "ENTITLEMENT_PENDING_CANCELLATION" => {
                let end = entitlement
                    .subscription_end_time
                    .or(entitlement.offer_end_time);
                end.map(|end| {
                    event(EventKind::Renewed {
                        term: Some(Term {
                            start: None,
                            end: Some(end),
                            unit: None,
                        }),
                    })
                })
                .into_iter()
                .collect()
            }
            "ENTITLEMENT_CANCELLED" => vec![event(EventKind::Lifecycle {
                event: Lifecycle::Cancel,
                reason: (!entitlement.cancellation_reason.is_empty())
                    .then(|| entitlement.cancellation_reason.clone()),
            })],
            "ENTITLEMENT_SUSPENDED" => vec![lifecycle(Lifecycle::Suspend)],
            other => {
                tracing::warn!(
                    state = other,
                    entitlement = entitlement.id(),
                    "entitlement state with no effect"
                );
                Vec::new()
            }
        }
    }
}
