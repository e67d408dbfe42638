//! A marketplace subscription and its lifecycle state machine.
//!
//! ```text
//!            activate                suspend
//! pending ───────────► active ◄──────────────► suspended
//!    │                 ▲  │      reinstate          │
//!    │ fail            ┆  │ begin_cancel            │ begin_cancel
//!    ▼                 ┆  ▼                         │
//! failed ┄┄┄┄┄┄┄┄┄┄┄┄┄┄┤  unsubscribe_pending ◄──────┘
//!                      ┆  │ cancel   (cancel is also legal from pending, active, suspended)
//!                      ┆  ▼
//!                      └┄ cancelled
//!
//! ┄┄ activate, newer than the failure or cancellation: the buyer subscribed again
//! ```
//! Re-applying the event that led to the current state is a no-op rather than an error:
//! marketplaces deliver notifications more than once.
//!
//! They also deliver them out of order (SQS standard queues, SNS and EventBridge retries), so
//! the state machine also takes time into account ([`SubscriptionStatus::apply_at`]): every
//! change keeps the marketplace's time of the event that made it, and an event older than that
//! is stale and changes nothing. The same time tells a late copy of the first subscribe-success
//! (stale: the subscription stays cancelled) from a buyer who subscribed again after cancelling
//! (AWS classic listings reuse the CustomerIdentifier, so the same subscription): an
//! activation newer than the cancellation or failure makes the subscription active again.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{Marketplace, PlanId, ProductId, SubscriptionId, TenantId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// Resolved from a landing token; not yet confirmed by the marketplace. Not usable, not metered.
    Pending,
    /// Confirmed (AWS subscribe-success, Azure activated): usable and metered.
    Active,
    /// Payment problem (Azure): data kept, access blocked, nothing metered.
    Suspended,
    /// Cancellation under way (AWS unsubscribe-pending): access ends, final usage may still be sent.
    UnsubscribePending,
    /// Ended. Terminal, unless the buyer subscribes again (a newer activation).
    Cancelled,
    /// The marketplace refused the purchase (AWS subscribe-fail). Terminal, unless the buyer
    /// subscribes again (a newer activation).
    Failed,
}

impl SubscriptionStatus {
    pub const ALL: [SubscriptionStatus; 6] = [
        Self::Pending,
        Self::Active,
        Self::Suspended,
        Self::UnsubscribePending,
        Self::Cancelled,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::UnsubscribePending => "unsubscribe_pending",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// May the buyer use the product?
    pub fn grants_access(self) -> bool {
        matches!(self, Self::Active)
    }

    /// May usage for this subscription be sent to the marketplace? The unsubscribe-pending
    /// window is the last chance to send usage already incurred.
    pub fn accepts_usage(self) -> bool {
        matches!(self, Self::Active | Self::UnsubscribePending)
    }

    /// Ended: only a newer activation (the buyer subscribing again) leaves it.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Cancelled | Self::Failed)
    }
}

impl fmt::Display for SubscriptionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to a subscription, in marketplace-neutral words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    Activate,
    Fail,
    Suspend,
    Reinstate,
    BeginCancel,
    Cancel,
}

impl Lifecycle {
    pub const ALL: [Lifecycle; 6] = [
        Self::Activate,
        Self::Fail,
        Self::Suspend,
        Self::Reinstate,
        Self::BeginCancel,
        Self::Cancel,
    ];

    /// The state this event leads to.
    pub fn target(self) -> SubscriptionStatus {
        match self {
            Self::Activate | Self::Reinstate => SubscriptionStatus::Active,
            Self::Fail => SubscriptionStatus::Failed,
            Self::Suspend => SubscriptionStatus::Suspended,
            Self::BeginCancel => SubscriptionStatus::UnsubscribePending,
            Self::Cancel => SubscriptionStatus::Cancelled,
        }
    }

    /// The states from which this event is a real change.
    fn sources(self) -> &'static [SubscriptionStatus] {
        use SubscriptionStatus::*;
        match self {
            Self::Activate => &[Pending],
            Self::Fail => &[Pending],
            Self::Suspend => &[Active],
            Self::Reinstate => &[Suspended],
            Self::BeginCancel => &[Active, Suspended],
            Self::Cancel => &[Pending, Active, Suspended, UnsubscribePending],
        }
    }

    /// The ended states from which this event is a real change when it is newer than the
    /// end: the buyer subscribed again (re-subscription).
    fn revives(self) -> &'static [SubscriptionStatus] {
        use SubscriptionStatus::*;
        match self {
            Self::Activate => &[Cancelled, Failed],
            _ => &[],
        }
    }
}

impl fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Activate => "activate",
            Self::Fail => "fail",
            Self::Suspend => "suspend",
            Self::Reinstate => "reinstate",
            Self::BeginCancel => "begin cancellation",
            Self::Cancel => "cancel",
        };
        f.write_str(name)
    }
}

/// The result of applying a lifecycle event to a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Changed {
        from: SubscriptionStatus,
        to: SubscriptionStatus,
    },
    /// Already in the state the event leads to (a duplicate delivery).
    Unchanged(SubscriptionStatus),
    /// Older than the last change applied (a late or out-of-order delivery): nothing changes.
    Stale(SubscriptionStatus),
}

impl Transition {
    /// A buyer subscribing again: an ended subscription made active by a newer activation.
    pub fn is_resubscription(self) -> bool {
        matches!(self, Self::Changed { from, to: SubscriptionStatus::Active } if from.is_terminal())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {event} a subscription that is {from}")]
pub struct IllegalTransition {
    pub from: SubscriptionStatus,
    pub event: Lifecycle,
}

impl SubscriptionStatus {
    /// The state machine: legal transitions change state, repeats are no-ops, the rest are errors.
    pub fn apply(self, event: Lifecycle) -> Result<Transition, IllegalTransition> {
        if self == event.target() {
            return Ok(Transition::Unchanged(self));
        }
        if event.sources().contains(&self) {
            return Ok(Transition::Changed {
                from: self,
                to: event.target(),
            });
        }
        Err(IllegalTransition { from: self, event })
    }

    /// The state machine with time, for events the marketplace dates: `occurred_at` is the
    /// event's time, `as_of` the time of the change that led to the current state (`None`:
    /// unknown). A repeat of the current state is a no-op; an event older than `as_of` is
    /// stale; an activation newer than a failure or cancellation is a re-subscription; the
    /// rest is [`SubscriptionStatus::apply`].
    pub fn apply_at(
        self,
        event: Lifecycle,
        occurred_at: OffsetDateTime,
        as_of: Option<OffsetDateTime>,
    ) -> Result<Transition, IllegalTransition> {
        if self == event.target() {
            return Ok(Transition::Unchanged(self));
        }
        if as_of.is_some_and(|last| occurred_at < last) {
            return Ok(Transition::Stale(self));
        }
        // Only a time proves the activation came after the end: without one (or at the same
        // instant) it may be a late copy of the first one, which must not revive anything.
        if event.revives().contains(&self) && as_of.is_some_and(|last| occurred_at > last) {
            return Ok(Transition::Changed {
                from: self,
                to: event.target(),
            });
        }
        self.apply(event)
    }
}

/// Contract or billing term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Term {
    #[serde(with = "time::serde::rfc3339::option")]
    pub start: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub end: Option<OffsetDateTime>,
    /// ISO 8601 duration as the marketplace states it (`P1M`, `P1Y`), if any.
    pub unit: Option<String>,
}

/// How the marketplace identifies a subscription and its buyer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalRef {
    pub marketplace: Marketplace,
    /// Unique within the marketplace: Azure subscription id; AWS LicenseArn for concurrent
    /// agreements, `CustomerIdentifier/ProductCode` for classic listings.
    pub external_id: String,
    /// Marketplace product: AWS ProductCode, Azure offerId.
    pub product_code: String,
    /// The buyer as the marketplace knows it: AWS CustomerIdentifier (or account id where no
    /// identifier exists), Azure beneficiary tenant id.
    pub customer_id: String,
    /// AWS CustomerAWSAccountId; Azure purchaser tenant id.
    pub customer_account_id: Option<String>,
    /// AWS LicenseArn (concurrent agreements).
    pub license_arn: Option<String>,
}

impl ExternalRef {
    /// The classic AWS key, one subscription per customer and product.
    pub fn aws_classic_id(customer_identifier: &str, product_code: &str) -> String {
        format!("{customer_identifier}/{product_code}")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub tenant_id: Option<TenantId>,
    pub external: ExternalRef,
    /// The vendor's catalog product this listing belongs to, once known.
    pub product_id: Option<ProductId>,
    pub plan_id: Option<PlanId>,
    pub quantity: Option<u32>,
    pub status: SubscriptionStatus,
    pub free_trial: bool,
    pub term: Option<Term>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Subscription {
    /// A freshly resolved subscription, not yet confirmed by its marketplace.
    pub fn pending(external: ExternalRef, now: OffsetDateTime) -> Self {
        Self {
            id: SubscriptionId::new(),
            tenant_id: None,
            external,
            product_id: None,
            plan_id: None,
            quantity: None,
            status: SubscriptionStatus::Pending,
            free_trial: false,
            term: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Applies a lifecycle event, updating the status and timestamp when it changes.
    pub fn apply(
        &mut self,
        event: Lifecycle,
        now: OffsetDateTime,
    ) -> Result<Transition, IllegalTransition> {
        let transition = self.status.apply(event)?;
        if let Transition::Changed { to, .. } = transition {
            self.status = to;
            self.updated_at = now;
        }
        Ok(transition)
    }
}

#[cfg(test)]
mod tests {
    use super::{Lifecycle::*, SubscriptionStatus::*, *};

    /// Every (state, event) pair and its expected result: the whole table, spelled out.
    #[test]
    fn every_transition_is_specified() {
        // (from, event, Some(to)) = changes; (from, event, None) = illegal; target == from = no-op.
        let legal: &[(SubscriptionStatus, Lifecycle, SubscriptionStatus)] = &[
            (Pending, Activate, Active),
            (Pending, Fail, Failed),
            (Pending, Cancel, Cancelled),
            (Active, Suspend, Suspended),
            (Active, BeginCancel, UnsubscribePending),
            (Active, Cancel, Cancelled),
            (Suspended, Reinstate, Active),
            (Suspended, BeginCancel, UnsubscribePending),
            (Suspended, Cancel, Cancelled),
            (UnsubscribePending, Cancel, Cancelled),
        ];
        for from in SubscriptionStatus::ALL {
            for event in Lifecycle::ALL {
                let result = from.apply(event);
                if let Some((_, _, to)) = legal.iter().find(|(f, e, _)| *f == from && *e == event) {
                    assert_eq!(
                        result,
                        Ok(Transition::Changed { from, to: *to }),
                        "{from} + {event}"
                    );
                } else if event.target() == from {
                    assert_eq!(result, Ok(Transition::Unchanged(from)), "{from} + {event}");
                } else {
                    assert_eq!(
                        result,
                        Err(IllegalTransition { from, event }),
                        "{from} + {event} must be refused"
                    );
                }
            }
        }
    }

    /// Without a time, nothing leaves an ended state: only a dated activation, newer than the
    /// end, does (see the next test).
    #[test]
    fn terminal_states_stay_terminal_without_time() {
        for event in Lifecycle::ALL {
            for from in [Cancelled, Failed] {
                match from.apply(event) {
                    Ok(Transition::Unchanged(s)) => assert_eq!(s, from),
                    Ok(Transition::Changed { .. } | Transition::Stale(_)) => {
                        panic!("{from} left by {event}")
                    }
                    Err(_) => {}
                }
            }
        }
    }

    /// With time: repeats are no-ops whatever their age, older events are stale, a newer
    /// activation revives an ended subscription, and everything else is the untimed table.
    #[test]
    fn dated_events_follow_the_table_with_time() {
        let t = |h: i64| time::macros::datetime!(2026-01-01 00:00 UTC) + time::Duration::hours(h);
        for from in SubscriptionStatus::ALL {
            for event in Lifecycle::ALL {
                let untimed = from.apply(event);
                // Newer than the last change: the table, plus re-subscription.
                let newer = from.apply_at(event, t(5), Some(t(3)));
                if event == Activate && from.is_terminal() {
                    let revived = Ok(Transition::Changed { from, to: Active });
                    assert_eq!(newer, revived, "{from} + newer {event}");
                    assert!(newer.unwrap().is_resubscription());
                } else {
                    assert_eq!(newer, untimed, "{from} + newer {event}");
                }
                // Older: stale, unless it repeats the current state.
                let older = from.apply_at(event, t(1), Some(t(3)));
                if event.target() == from {
                    assert_eq!(
                        older,
                        Ok(Transition::Unchanged(from)),
                        "{from} + old {event}"
                    );
                } else {
                    assert_eq!(older, Ok(Transition::Stale(from)), "{from} + old {event}");
                }
                // At the same instant, or with no time known: the untimed table, so a copy of
                // the first activation never revives a cancelled subscription.
                assert_eq!(from.apply_at(event, t(3), Some(t(3))), untimed);
                assert_eq!(from.apply_at(event, t(3), None), untimed);
            }
        }
    }

    #[test]
    fn only_a_revival_counts_as_resubscription() {
        let changed = |from, to| Transition::Changed { from, to };
        assert!(changed(Cancelled, Active).is_resubscription());
        assert!(changed(Failed, Active).is_resubscription());
        assert!(!changed(Pending, Active).is_resubscription());
        assert!(!changed(Suspended, Active).is_resubscription());
        assert!(!Transition::Unchanged(Active).is_resubscription());
    }

    #[test]
    fn access_and_metering_rules() {
        assert!(Active.grants_access());
        for s in [Pending, Suspended, UnsubscribePending, Cancelled, Failed] {
            assert!(!s.grants_access(), "{s}");
        }
        assert!(Active.accepts_usage() && UnsubscribePending.accepts_usage());
        for s in [Pending, Suspended, Cancelled, Failed] {
            assert!(!s.accepts_usage(), "{s}");
        }
    }

    #[test]
    fn status_names_round_trip() {
        for s in SubscriptionStatus::ALL {
            assert_eq!(SubscriptionStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(SubscriptionStatus::parse("bogus"), None);
    }

    #[test]
    fn subscription_apply_updates_timestamp_only_on_change() {
        let t0 = time::macros::datetime!(2026-01-01 00:00 UTC);
        let t1 = time::macros::datetime!(2026-01-01 01:00 UTC);
        let external = ExternalRef {
            marketplace: Marketplace::AWS,
            external_id: ExternalRef::aws_classic_id("cust", "prod"),
            product_code: "prod".into(),
            customer_id: "cust".into(),
            customer_account_id: Some("123456789012".into()),
            license_arn: None,
        };
        let mut sub = Subscription::pending(external, t0);
        sub.apply(Activate, t1).unwrap();
        assert_eq!((sub.status, sub.updated_at), (Active, t1));
        let later = t1 + time::Duration::hours(1);
        assert_eq!(
            sub.apply(Activate, later),
            Ok(Transition::Unchanged(Active))
        );
        assert_eq!(sub.updated_at, t1);
        assert!(sub.apply(Fail, later).is_err());
        assert_eq!(sub.status, Active);
    }
}
