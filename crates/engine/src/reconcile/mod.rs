//! Reconciliation: compares our subscriptions with the marketplaces' own view and repairs
//! what is safe to repair.
//!
//! Missed webhooks and stuck activations are the most common complaint about marketplace
//! integrations. Repairs go through [`apply_event`], the same path marketplace events take, so
//! the timeline records them (source `reconcile`), vendor webhooks fire and the entitlement
//! index follows. Never repaired, only reported: subscriptions we never saw (there is no
//! tenant to bind them to) and anything that would bring a cancelled or failed subscription
//! back.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use marketlink_core::{
    Entitlement, EventKind, Lifecycle, Marketplace, MarketplaceEvent, MarketplaceView, PlanId,
    ProviderError, Subscription, SubscriptionId, SubscriptionStatus,
};
use marketlink_store::{NewJob, QueueState, StoreError, SubscriptionFilter};
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::{ApplyOutcome, Engine, apply::apply_event, onboarding::ACTIVATE_JOB};

/// The timeline source of every repair.
pub const SOURCE: &str = "reconcile";

/// How a run behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileSettings {
    /// Report only; change nothing.
    pub dry_run: bool,
    /// A claimed subscription pending for longer than this, while the marketplace waits for
    /// our activation, counts as stuck.
    pub stuck_after: Duration,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            dry_run: false,
            stuck_after: Duration::minutes(15),
        }
    }
}

/// What differs between us and the marketplace.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "drift", rename_all = "snake_case")]
pub enum Drift {
    StatusMismatch {
        ours: SubscriptionStatus,
        theirs: SubscriptionStatus,
    },
    PlanMismatch {
        ours: Option<PlanId>,
        theirs: PlanId,
    },
    QuantityMismatch {
        ours: Option<u32>,
        theirs: u32,
    },
    /// Counts alone cannot tell an operator what differs: each differing dimension is named
    /// with both sides' entitlement (`None`: that side has no such dimension).
    EntitlementsDiffer {
        ours: usize,
        theirs: usize,
        differences: Vec<EntitlementDifference>,
    },
    /// The marketplace has it; we never saw it (a lost notification, a buyer who never
    /// reached the landing page).
    UnknownToUs {
        theirs: Option<SubscriptionStatus>,
    },
    /// Claimed by a tenant, pending too long, while the marketplace waits for our activation.
    StuckPending {
        #[serde(with = "time::serde::rfc3339")]
        since: OffsetDateTime,
    },
}

/// One dimension on which our entitlements and the marketplace's disagree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntitlementDifference {
    pub dimension: String,
    pub ours: Option<Entitlement>,
    pub theirs: Option<Entitlement>,
}

/// What was done about a drift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", content = "detail", rename_all = "snake_case")]
pub enum Action {
    Repaired(String),
    /// Dry run: this would have been done.
    WouldRepair(String),
    /// Not safe to repair automatically: an operator decides.
    ReportOnly(String),
    /// The repair was tried and did not go through.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftItem {
    pub marketplace: Marketplace,
    pub external_id: String,
    pub subscription_id: Option<SubscriptionId>,
    #[serde(flatten)]
    pub drift: Drift,
    pub action: Action,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReconcileReport {
    /// Subscriptions the marketplaces told us about.
    pub surveyed: usize,
    pub items: Vec<DriftItem>,
    pub repaired: usize,
    pub report_only: usize,
    pub failed: usize,
    /// Marketplaces that could not be surveyed, and why.
    pub skipped: Vec<(Marketplace, String)>,
    /// Why a marketplace's subscription status could not be compared (each reason once, with
    /// how many subscriptions it left uncompared): nothing was changed for them.
    pub status_unknown: Vec<(Marketplace, String, usize)>,
}

impl ReconcileReport {
    fn push(&mut self, item: DriftItem) {
        match &item.action {
            Action::Repaired(_) => self.repaired += 1,
            Action::ReportOnly(_) | Action::WouldRepair(_) => self.report_only += 1,
            Action::Failed(_) => self.failed += 1,
        }
        self.items.push(item);
    }
}

/// The lifecycle event that moves `ours` to `theirs`, when that is safe.
pub(crate) fn lifecycle_towards(
    ours: SubscriptionStatus,
    theirs: SubscriptionStatus,
) -> Result<Lifecycle, String> {
    use SubscriptionStatus::*;
    if (ours, theirs) == (Failed, Pending) {
        return Err(
            "our activation gave up while the marketplace still waits for it: see the dead activation job's error; once fixed, the buyer buys again or an operator activates at the marketplace"
                .into(),
        );
    }
    if ours.is_terminal() {
        return Err(format!(
            "we hold it {ours}; the marketplace says {theirs}: bringing an ended subscription back needs an operator"
        ));
    }
    match (ours, theirs) {
        (Pending, Active) => Ok(Lifecycle::Activate),
        (Suspended, Active) => Ok(Lifecycle::Reinstate),
        (UnsubscribePending, Active) => Err(
            "we hold a cancellation under way; the marketplace says active: an operator decides"
                .into(),
        ),
        (_, Suspended) => Ok(Lifecycle::Suspend),
        (_, UnsubscribePending) => Ok(Lifecycle::BeginCancel),
        (_, Cancelled) => Ok(Lifecycle::Cancel),
        (Pending, Failed) => Ok(Lifecycle::Fail),
        (_, theirs) => Err(format!(
            "no safe way from {ours} to {theirs}: an operator decides"
        )),
    }
}

/// The dimensions on which `ours` and `theirs` differ, by dimension name. Two entitlements
/// agree when their values are equal and their expiries fall in the same millisecond: the
/// store keeps milliseconds, so a finer marketplace time is not drift.
fn entitlement_differences(
    ours: &[Entitlement],
    theirs: &[Entitlement],
) -> Vec<EntitlementDifference> {
    let by_dimension = |list: &[Entitlement]| -> BTreeMap<String, Entitlement> {
        list.iter()
            .map(|e| (e.dimension.clone(), e.clone()))
            .collect()
    };
    let (ours, theirs) = (by_dimension(ours), by_dimension(theirs));
    let millis = |e: &Entitlement| e.expires_at.map(|t| t.unix_timestamp_nanos() / 1_000_000);
    let same = |a: &Entitlement, b: &Entitlement| a.value == b.value && millis(a) == millis(b);
    let dimensions: BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
    dimensions
        .into_iter()
        .filter_map(|dimension| {
            let (a, b) = (ours.get(dimension), theirs.get(dimension));
            match (a, b) {
                (Some(a), Some(b)) if same(a, b) => None,
                _ => Some(EntitlementDifference {
                    dimension: dimension.clone(),
                    ours: a.cloned(),
                    theirs: b.cloned(),
                }),
            }
        })
        .collect()
}

impl Engine {
    /// Compares every marketplace's view with ours and repairs what is safe.
    pub async fn reconcile(
        &self,
        settings: &ReconcileSettings,
    ) -> Result<ReconcileReport, StoreError> {
        let mut report = ReconcileReport::default();
        let providers: Vec<_> = self.providers.iter().cloned().collect();
        for provider in providers {
            let marketplace = provider.marketplace();
            let ours = self.all_subscriptions(&marketplace).await?;
            let known: Vec<_> = ours
                .iter()
                .filter(|s| !s.status.is_terminal())
                .map(|s| s.external.clone())
                .collect();
            let views = match provider.survey(&known).await {
                Ok(views) => views,
                Err(ProviderError::Unsupported { .. }) => {
                    report
                        .skipped
                        .push((marketplace.clone(), "surveying is not supported".into()));
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%marketplace, %error, "reconciliation: survey failed");
                    report
                        .skipped
                        .push((marketplace.clone(), error.to_string()));
                    continue;
                }
            };
            report.surveyed += views.len();
            note_unknown_statuses(&marketplace, &views, &mut report);
            let by_id: HashMap<&str, &Subscription> = ours
                .iter()
                .map(|s| (s.external.external_id.as_str(), s))
                .collect();
            for view in &views {
                match by_id.get(view.subscription.external_id.as_str()) {
                    Some(sub) => self.compare(sub, view, settings, &mut report).await?,
                    None => report.push(DriftItem {
                        marketplace: marketplace.clone(),
                        external_id: view.subscription.external_id.clone(),
                        subscription_id: None,
                        drift: Drift::UnknownToUs {
                            theirs: view.status,
                        },
                        action: Action::ReportOnly(
                            "no tenant to bind it to: the buyer must open the landing page (send them the listing), or an operator links it".into(),
                        ),
                    }),
                }
            }
        }
        for item in &report.items {
            tracing::info!(
                marketplace = %item.marketplace,
                external_id = %item.external_id,
                drift = ?item.drift,
                action = ?item.action,
                "reconciliation drift"
            );
        }
        Ok(report)
    }

    async fn all_subscriptions(
        &self,
        marketplace: &Marketplace,
    ) -> Result<Vec<Subscription>, StoreError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_subscriptions(&SubscriptionFilter {
                    tenant_id: None,
                    marketplace: Some(marketplace.clone()),
                    status: None,
                    after,
                    limit: 500,
                })
                .await?;
            let done = page.len() < 500;
            after = page.last().map(|s| s.id);
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// Finds where `sub` differs from the marketplace's `view` and repairs or reports each.
    async fn compare(
        &self,
        sub: &Subscription,
        view: &MarketplaceView,
        settings: &ReconcileSettings,
        report: &mut ReconcileReport,
    ) -> Result<(), StoreError> {
        if let Some(theirs) = view.status {
            self.compare_status(sub, theirs, settings, report).await?;
        }
        if let Some(theirs) = &view.plan_id
            && sub.plan_id.as_ref() != Some(theirs)
        {
            let kind = EventKind::PlanChanged {
                plan_id: theirs.clone(),
            };
            let action = self.repair(sub, kind, settings).await?;
            let drift = Drift::PlanMismatch {
                ours: sub.plan_id.clone(),
                theirs: theirs.clone(),
            };
            report.push(drift_item(sub, drift, action));
        }
        if let Some(theirs) = view.quantity
            && sub.quantity != Some(theirs)
        {
            let kind = EventKind::QuantityChanged { quantity: theirs };
            let action = self.repair(sub, kind, settings).await?;
            let drift = Drift::QuantityMismatch {
                ours: sub.quantity,
                theirs,
            };
            report.push(drift_item(sub, drift, action));
        }
        if let Some(theirs) = &view.entitlements {
            let ours = self.store.entitlements(sub.id).await?;
            let differences = entitlement_differences(&ours, theirs);
            // A repeated dimension (which the store refuses) shows only in the counts.
            if !differences.is_empty() || ours.len() != theirs.len() {
                let kind = EventKind::EntitlementsChanged {
                    entitlements: theirs.clone(),
                };
                let action = self.repair(sub, kind, settings).await?;
                let drift = Drift::EntitlementsDiffer {
                    ours: ours.len(),
                    theirs: theirs.len(),
                    differences,
                };
                report.push(drift_item(sub, drift, action));
            }
        }
        Ok(())
    }

    /// A status the marketplace disagrees with, or an activation stuck while the marketplace
    /// waits for it.
    async fn compare_status(
        &self,
        sub: &Subscription,
        theirs: SubscriptionStatus,
        settings: &ReconcileSettings,
        report: &mut ReconcileReport,
    ) -> Result<(), StoreError> {
        if theirs != sub.status {
            let action = match lifecycle_towards(sub.status, theirs) {
                Ok(lifecycle) => {
                    let kind = EventKind::Lifecycle {
                        event: lifecycle,
                        reason: Some("reconciliation".into()),
                    };
                    self.repair(sub, kind, settings).await?
                }
                Err(reason) => Action::ReportOnly(reason),
            };
            let drift = Drift::StatusMismatch {
                ours: sub.status,
                theirs,
            };
            report.push(drift_item(sub, drift, action));
        } else if self.stuck_pending(sub, settings) {
            let action = self.rerun_activation(sub, settings).await?;
            let drift = Drift::StuckPending {
                since: sub.created_at,
            };
            report.push(drift_item(sub, drift, action));
        }
        Ok(())
    }

    /// Claimed, pending for longer than `stuck_after`, on a marketplace that waits for our
    /// activation.
    fn stuck_pending(&self, sub: &Subscription, settings: &ReconcileSettings) -> bool {
        sub.status == SubscriptionStatus::Pending
            && sub.tenant_id.is_some()
            && self.clock.now() - sub.created_at >= settings.stuck_after
            && self
                .providers
                .get(&sub.external.marketplace)
                .is_some_and(|p| p.capabilities().vendor_activates)
    }

    /// Applies the marketplace's state as an event from `reconcile`.
    async fn repair(
        &self,
        sub: &Subscription,
        kind: EventKind,
        settings: &ReconcileSettings,
    ) -> Result<Action, StoreError> {
        let what = describe(&kind);
        if settings.dry_run {
            return Ok(Action::WouldRepair(what));
        }
        let event = MarketplaceEvent {
            subscription: sub.external.clone(),
            occurred_at: self.clock.now(),
            kind,
            free_trial: None,
            aliases: Vec::new(),
        };
        Ok(match apply_event(self, &event, SOURCE).await {
            Ok(ApplyOutcome::Applied)
            | Ok(ApplyOutcome::Unchanged)
            | Ok(ApplyOutcome::Resubscribed { .. }) => Action::Repaired(what),
            Ok(ApplyOutcome::Stale) => {
                Action::Failed(format!("{what}: a newer statement is already applied"))
            }
            Ok(ApplyOutcome::Refused(reason) | ApplyOutcome::Settled(reason)) => {
                Action::Failed(format!("{what}: {reason}"))
            }
            Err(crate::apply::ApplyError::Store(e)) => return Err(e),
            Err(crate::apply::ApplyError::Provider(e)) => Action::Failed(format!("{what}: {e}")),
        })
    }

    async fn activation_job(
        &self,
        key: &str,
        state: QueueState,
    ) -> Result<Option<marketlink_store::QueueItem>, StoreError> {
        let jobs = self.store.outbox_list(state, 10_000).await?;
        Ok(jobs
            .into_iter()
            .find(|j| j.kind == ACTIVATE_JOB && j.dedup_key == key))
    }

    /// Puts a stuck activation back in line: the dead or finished job again, or a new one.
    async fn rerun_activation(
        &self,
        sub: &Subscription,
        settings: &ReconcileSettings,
    ) -> Result<Action, StoreError> {
        let key = sub.id.to_string();
        let now = self.clock.now();
        if self
            .activation_job(&key, QueueState::Pending)
            .await?
            .is_some()
        {
            return Ok(Action::ReportOnly(
                "the activation is queued and retrying: see its last error in the admin portal"
                    .into(),
            ));
        }
        if settings.dry_run {
            return Ok(Action::WouldRepair("run the activation again".into()));
        }
        let action = if let Some(dead) = self.activation_job(&key, QueueState::Dead).await? {
            self.store.outbox_requeue(dead.id, now).await?;
            format!(
                "requeued the activation that gave up ({})",
                dead.last_error.as_deref().unwrap_or("no error recorded")
            )
        } else if let Some(done) = self.activation_job(&key, QueueState::Done).await? {
            self.store.outbox_replay(done.id, now).await?;
            "ran the finished activation again".to_owned()
        } else {
            self.store
                .outbox_enqueue(
                    &NewJob {
                        marketplace: sub.external.marketplace.to_string(),
                        kind: ACTIVATE_JOB.into(),
                        dedup_key: sub.id.to_string(),
                        payload: serde_json::json!({ "subscription_id": sub.id }),
                        run_at: now,
                    },
                    now,
                )
                .await?;
            "queued an activation".to_owned()
        };
        self.outbox_ready.notify_one();
        self.record(
            sub.id,
            SOURCE,
            "activation_requeued",
            "applied",
            serde_json::json!({ "action": action }),
        )
        .await?;
        Ok(Action::Repaired(action))
    }
}

/// Collects the reasons a survey gave for statuses it could not read, once per reason.
fn note_unknown_statuses(
    marketplace: &Marketplace,
    views: &[MarketplaceView],
    report: &mut ReconcileReport,
) {
    for reason in views.iter().filter_map(|v| v.status_unknown.as_ref()) {
        match report
            .status_unknown
            .iter_mut()
            .find(|(m, r, _)| m == marketplace && r == reason)
        {
            Some((_, _, count)) => *count += 1,
            None => {
                tracing::warn!(%marketplace, %reason, "reconciliation: status not compared");
                report
                    .status_unknown
                    .push((marketplace.clone(), reason.clone(), 1));
            }
        }
    }
}

fn drift_item(sub: &Subscription, drift: Drift, action: Action) -> DriftItem {
    DriftItem {
        marketplace: sub.external.marketplace.clone(),
        external_id: sub.external.external_id.clone(),
        subscription_id: Some(sub.id),
        drift,
        action,
    }
}

fn describe(kind: &EventKind) -> String {
    match kind {
        EventKind::Lifecycle { event, .. } => format!("{event} as the marketplace says"),
        EventKind::PlanChanged { plan_id } => format!("plan set to {plan_id}"),
        EventKind::QuantityChanged { quantity } => format!("quantity set to {quantity}"),
        EventKind::EntitlementsChanged { entitlements } => format!(
            "entitlements replaced with the marketplace's {}",
            entitlements.len()
        ),
        EventKind::Renewed { .. } => "term renewed".into(),
        EventKind::ChangeRequested { .. } => "change answered".into(),
        EventKind::Relicensed { license_arn } => format!("licence set to {license_arn}"),
    }
}

#[cfg(test)]
mod tests;
