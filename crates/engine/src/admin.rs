//! What the operators' admin portal reads and repairs: an overview, tenants and
//! subscriptions, a subscription's timeline, dead letters and their retry, webhook deliveries
//! and their replay, usage hours, and buyers waiting for a hand-held set-up.
//!
//! Every repair is audited under the operator's name and wakes the worker that will act on it.

use marketlink_core::{Subscription, SubscriptionId};
use marketlink_store::{
    OnboardingRequest, QueueItem, QueueState, StoreError, SubscriptionFilter, TimelineEntry,
    UsageBacklog, UsageHour, UsageHourState, UsageHourSummary,
};
use time::Duration;
use uuid::Uuid;

use crate::{Engine, audit::Actor, webhooks::WEBHOOK_JOB};

/// Timeline entries shown with one subscription.
const TIMELINE_LIMIT: u32 = 500;
/// How far back the hourly usage view reaches.
const RECENT_USAGE: Duration = Duration::hours(48);

/// The portal's first page.
#[derive(Debug)]
pub struct Overview {
    pub tenants: i64,
    /// `(marketplace, status, count)`.
    pub subscriptions: Vec<(String, String, i64)>,
    /// Marketplace messages waiting to be applied, and the age of the oldest.
    pub inbox_waiting: i64,
    pub inbox_oldest: Option<Duration>,
}

/// A subscription with everything that happened to it.
#[derive(Debug)]
pub struct SubscriptionHistory {
    pub subscription: Subscription,
    pub timeline: Vec<TimelineEntry>,
    /// The other names its marketplace gave it (AWS agreements, licences), oldest first.
    pub aliases: Vec<marketlink_core::Alias>,
}

/// Work the queues gave up on.
#[derive(Debug)]
pub struct DeadLetters {
    pub inbox: Vec<QueueItem>,
    pub outbox: Vec<QueueItem>,
}

/// A queue whose dead items an operator may send again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadQueue {
    /// Marketplace messages we could not apply.
    Inbox,
    /// Marketplace calls and webhooks we gave up on.
    Outbox,
    /// Hourly usage the marketplace did not bill.
    Usage,
}

impl DeadQueue {
    /// `inbox`, `outbox` or `usage`, as in the portal's URLs.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "inbox" => Some(Self::Inbox),
            "outbox" => Some(Self::Outbox),
            "usage" => Some(Self::Usage),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbox => "inbox",
            Self::Outbox => "outbox",
            Self::Usage => "usage",
        }
    }
}

/// Usage on its way to the marketplaces.
#[derive(Debug)]
pub struct UsageOverview {
    pub backlog: UsageBacklog,
    /// Sent and pending per hour, marketplace, subscription and dimension.
    pub recent: Vec<UsageHourSummary>,
    /// Hours the marketplace did not bill (they can be sent again).
    pub dead: Vec<UsageHour>,
    /// Hours whose billed quantity differs from ours (to investigate, not to resend).
    pub mismatches: Vec<UsageHour>,
}

impl Engine {
    /// Counts for the portal's overview.
    pub async fn overview(&self) -> Result<Overview, StoreError> {
        let (tenants, subscriptions, (inbox_waiting, inbox_oldest)) = tokio::try_join!(
            self.store.tenant_count(),
            self.store.subscription_counts(),
            self.store.inbox_backlog(self.clock.now()),
        )?;
        Ok(Overview {
            tenants,
            subscriptions,
            inbox_waiting,
            inbox_oldest,
        })
    }

    /// Subscriptions matching `filter`, a page at a time.
    pub async fn list_subscriptions(
        &self,
        filter: &SubscriptionFilter,
    ) -> Result<Vec<Subscription>, StoreError> {
        self.store.list_subscriptions(filter).await
    }

    /// One subscription, its timeline and its other names. A timeline or names that cannot be
    /// read show empty rather than hiding the subscription's facts.
    pub async fn subscription_history(
        &self,
        id: SubscriptionId,
    ) -> Result<SubscriptionHistory, StoreError> {
        let subscription = self.store.get_subscription(id).await?;
        let timeline = self
            .store
            .timeline(id, TIMELINE_LIMIT)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, subscription = %id, "cannot read the timeline");
                Vec::new()
            });
        let aliases = self
            .store
            .subscription_aliases(id)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, subscription = %id, "cannot read the subscription's names");
                Vec::new()
            });
        Ok(SubscriptionHistory {
            subscription,
            timeline,
            aliases,
        })
    }

    /// Dead inbox messages and outbox jobs, newest first.
    pub async fn dead_letters(&self, limit: u32) -> Result<DeadLetters, StoreError> {
        let (inbox, outbox) = tokio::try_join!(
            self.store.inbox_list(QueueState::Dead, limit),
            self.store.outbox_list(QueueState::Dead, limit),
        )?;
        Ok(DeadLetters { inbox, outbox })
    }

    /// Sends a dead item again, as `operator` asked. `NotFound` when it is not dead (any
    /// more).
    pub async fn retry_dead(
        &self,
        operator: &Actor,
        queue: DeadQueue,
        id: Uuid,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        match queue {
            DeadQueue::Inbox => self.store.inbox_requeue(id, now).await?,
            DeadQueue::Outbox => self.store.outbox_requeue(id, now).await?,
            DeadQueue::Usage => self.store.usage_requeue(id, now).await?,
        }
        let action = format!("{}.requeue", queue.as_str());
        self.audit(
            operator,
            &action,
            Some(&id.to_string()),
            serde_json::json!({}),
        )
        .await;
        self.inbox_ready.notify_one();
        self.outbox_ready.notify_one();
        Ok(())
    }

    /// Provisioning webhooks to the vendor's product in `state`, newest first.
    pub async fn webhook_deliveries(
        &self,
        state: QueueState,
        limit: u32,
    ) -> Result<Vec<QueueItem>, StoreError> {
        let jobs = self.store.outbox_list(state, limit).await?;
        Ok(jobs
            .into_iter()
            .filter(|job| job.kind == WEBHOOK_JOB)
            .collect())
    }

    /// Sends a delivered or given-up webhook again with the same webhook-id. `NotFound` while
    /// it is still being sent, or when there is no such job.
    pub async fn replay_webhook(&self, operator: &Actor, id: Uuid) -> Result<(), StoreError> {
        self.store.outbox_replay(id, self.clock.now()).await?;
        self.audit(
            operator,
            "webhook.replay",
            Some(&id.to_string()),
            serde_json::json!({}),
        )
        .await;
        self.outbox_ready.notify_one();
        Ok(())
    }

    /// Buyers who asked for a hand-held set-up and are still waiting.
    pub async fn open_onboarding_requests(
        &self,
        limit: u32,
    ) -> Result<Vec<OnboardingRequest>, StoreError> {
        self.store.list_onboarding_requests("open", limit).await
    }

    /// Usage hours by state, the last two days hour by hour, and the hours to look at.
    pub async fn usage_overview(&self, problems_limit: u32) -> Result<UsageOverview, StoreError> {
        let now = self.clock.now();
        let backlog = self.store.usage_backlog(now).await?;
        let recent = self.store.usage_by_hour(now - RECENT_USAGE).await?;
        let dead = self
            .store
            .usage_hours_in(UsageHourState::Dead, problems_limit)
            .await?;
        let mismatches = self
            .store
            .usage_hours_in(UsageHourState::Mismatch, problems_limit)
            .await?;
        Ok(UsageOverview {
            backlog,
            recent,
            dead,
            mismatches,
        })
    }

    /// Notes an operator's sign-in in the audit log.
    pub async fn operator_signed_in(&self, operator: &Actor) {
        self.audit(operator, "admin.sign_in", None, serde_json::json!({}))
            .await;
    }
}
