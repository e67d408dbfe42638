//! "May tenant T use feature F of product P?", answered from memory.
//!
//! The index holds every tenant's subscriptions (status, plan, quantity, term, entitlements)
//! and is kept in step with the database by loading what changed since its watermark (which
//! also picks up changes made by other replicas). A check is a hash lookup and a scan of the
//! tenant's few subscriptions: no I/O.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use marketlink_core::{
    Catalog, Entitlement, EntitlementValue, PlanId, ProductId, Subscription, SubscriptionId,
    SubscriptionStatus, TenantId, Term,
};
use marketlink_store::{Store, StoreError};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// What the index keeps of one subscription.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grant {
    pub subscription_id: SubscriptionId,
    pub marketplace: String,
    pub product_id: Option<ProductId>,
    pub product_code: String,
    pub status: SubscriptionStatus,
    pub plan_id: Option<PlanId>,
    pub quantity: Option<u32>,
    pub free_trial: bool,
    #[serde(skip)]
    pub term: Option<Term>,
    pub entitlements: Vec<Entitlement>,
}

impl Grant {
    fn from_subscription(s: &Subscription, entitlements: Vec<Entitlement>) -> Self {
        Self {
            subscription_id: s.id,
            marketplace: s.external.marketplace.to_string(),
            product_id: s.product_id.clone(),
            product_code: s.external.product_code.clone(),
            status: s.status,
            plan_id: s.plan_id.clone(),
            quantity: s.quantity,
            free_trial: s.free_trial,
            term: s.term.clone(),
            entitlements,
        }
    }
}

/// Why a check was allowed or denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Allowed,
    NotSubscribed,
    /// Bought, but the marketplace has not confirmed it yet.
    Pending,
    Suspended,
    Cancelled,
    ContractExpired,
    FeatureNotInPlan,
    QuantityExceeded,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    pub reason: Reason,
    /// A sentence for people.
    pub detail: String,
    pub subscription_id: Option<SubscriptionId>,
    pub plan_id: Option<PlanId>,
    /// Where the customer can subscribe or upgrade (seed 003: blocked features prompt a
    /// subscription).
    pub subscribe_url: Option<String>,
    /// The limit that applied, for quantity checks.
    pub limit: Option<i64>,
}

#[derive(Default)]
struct Watermark {
    at: i64,
    id: Option<Uuid>,
}

pub struct EntitlementIndex {
    catalog: Arc<Catalog>,
    tenants: RwLock<HashMap<TenantId, Vec<Grant>>>,
    watermark: Mutex<Watermark>,
}

fn rank(status: SubscriptionStatus) -> u8 {
    match status {
        SubscriptionStatus::Active => 5,
        SubscriptionStatus::Suspended => 4,
        SubscriptionStatus::UnsubscribePending => 3,
        SubscriptionStatus::Pending => 2,
        SubscriptionStatus::Cancelled => 1,
        SubscriptionStatus::Failed => 0,
    }
}

fn truthy(value: &EntitlementValue) -> bool {
    match value {
        EntitlementValue::Boolean(b) => *b,
        EntitlementValue::Integer(i) => *i > 0,
        EntitlementValue::Double(d) => *d > 0.0,
        EntitlementValue::String(s) => !s.is_empty(),
    }
}

impl EntitlementIndex {
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self {
            catalog,
            tenants: RwLock::new(HashMap::new()),
            watermark: Mutex::new(Watermark::default()),
        }
    }

    /// Adds or replaces one subscription (moving it if its tenant changed).
    pub fn upsert(&self, tenant: TenantId, grant: Grant) {
        let mut tenants = self.tenants.write().unwrap_or_else(|p| p.into_inner());
        let grants = tenants.entry(tenant).or_default();
        match grants
            .iter_mut()
            .find(|g| g.subscription_id == grant.subscription_id)
        {
            Some(existing) => *existing = grant,
            None => grants.push(grant),
        }
    }

    /// Loads everything that changed since the last sync; returns how many subscriptions.
    pub async fn sync(&self, store: &Store) -> Result<usize, StoreError> {
        let mut loaded = 0;
        loop {
            let (since, after) = {
                let w = self.watermark.lock().unwrap_or_else(|p| p.into_inner());
                (w.at, w.id)
            };
            let batch = store.changed_subscriptions(since, after, 5_000).await?;
            let Some((last, _)) = batch.last() else {
                return Ok(loaded);
            };
            let next = (
                i64::try_from(last.updated_at.unix_timestamp_nanos() / 1_000_000)
                    .unwrap_or(i64::MAX),
                Some(last.id.0),
            );
            loaded += batch.len();
            for (subscription, entitlements) in &batch {
                if let Some(tenant) = subscription.tenant_id {
                    self.upsert(
                        tenant,
                        Grant::from_subscription(subscription, entitlements.clone()),
                    );
                }
            }
            let mut w = self.watermark.lock().unwrap_or_else(|p| p.into_inner());
            w.at = next.0;
            w.id = next.1;
        }
    }

    pub fn subscriptions(&self, tenant: TenantId) -> Vec<Grant> {
        let tenants = self.tenants.read().unwrap_or_else(|p| p.into_inner());
        tenants.get(&tenant).cloned().unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        let tenants = self.tenants.read().unwrap_or_else(|p| p.into_inner());
        tenants.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn subscribe_url(&self, product: &ProductId) -> Option<String> {
        self.catalog
            .product(product)
            .and_then(|p| p.listings.iter().find_map(|l| l.listing_url.clone()))
    }

    /// Decides whether `tenant` may use `feature` of `product` (and, with `quantity`, that
    /// many units of it).
    pub fn check(
        &self,
        tenant: TenantId,
        product: &ProductId,
        feature: Option<&str>,
        quantity: Option<i64>,
        now: OffsetDateTime,
    ) -> Decision {
        let tenants = self.tenants.read().unwrap_or_else(|p| p.into_inner());
        let grants: Vec<&Grant> = tenants
            .get(&tenant)
            .map(|g| {
                g.iter()
                    .filter(|g| g.product_id.as_ref() == Some(product))
                    .collect()
            })
            .unwrap_or_default();
        let deny =
            |reason: Reason, detail: String, grant: Option<&Grant>, limit: Option<i64>| Decision {
                allowed: false,
                reason,
                detail,
                subscription_id: grant.map(|g| g.subscription_id),
                plan_id: grant.and_then(|g| g.plan_id.clone()),
                subscribe_url: self.subscribe_url(product),
                limit,
            };
        let Some(best) = grants.iter().copied().max_by_key(|g| rank(g.status)) else {
            return deny(
                Reason::NotSubscribed,
                format!("no subscription to {product}"),
                None,
                None,
            );
        };
        if let Some((reason, detail)) = inactive(best.status) {
            return deny(reason, detail.into(), Some(best), None);
        }
        // Among the active subscriptions (concurrent agreements), any one that allows wins.
        let mut last_denial = None;
        for grant in grants
            .iter()
            .filter(|g| g.status == SubscriptionStatus::Active)
        {
            match self.check_grant(grant, feature, quantity, now) {
                Ok(limit) => {
                    return Decision {
                        allowed: true,
                        reason: Reason::Allowed,
                        detail: "allowed".into(),
                        subscription_id: Some(grant.subscription_id),
                        plan_id: grant.plan_id.clone(),
                        subscribe_url: None,
                        limit,
                    };
                }
                Err((reason, detail, limit)) => {
                    last_denial = Some(deny(reason, detail, Some(grant), limit))
                }
            }
        }
        last_denial.unwrap_or_else(|| {
            deny(
                Reason::NotSubscribed,
                "no active subscription".into(),
                None,
                None,
            )
        })
    }

    #[allow(clippy::type_complexity)]
    fn check_grant(
        &self,
        grant: &Grant,
        feature: Option<&str>,
        quantity: Option<i64>,
        now: OffsetDateTime,
    ) -> Result<Option<i64>, (Reason, String, Option<i64>)> {
        let term_over = grant
            .term
            .as_ref()
            .and_then(|t| t.end)
            .is_some_and(|end| end <= now);
        let all_expired =
            !grant.entitlements.is_empty() && grant.entitlements.iter().all(|e| e.is_expired(now));
        if term_over || all_expired {
            return Err((
                Reason::ContractExpired,
                "the contract has expired".into(),
                None,
            ));
        }
        let Some(feature) = feature else {
            return Ok(None);
        };
        let dimension = grant
            .entitlements
            .iter()
            .find(|e| e.dimension == feature && !e.is_expired(now));
        let product = grant
            .product_id
            .as_ref()
            .and_then(|p| self.catalog.product(p));
        let plan = product.and_then(|p| {
            grant
                .plan_id
                .as_ref()
                .and_then(|id| p.plan(id))
                .or_else(|| p.plans.first())
        });
        let in_plan = match plan {
            Some(plan) => plan.features.iter().any(|f| f == feature),
            // No plans configured for the product: every feature comes with it.
            None => product.is_none_or(|p| p.plans.is_empty()),
        };
        let granted = in_plan || dimension.is_some_and(|e| truthy(&e.value));
        if !granted {
            return Err((
                Reason::FeatureNotInPlan,
                format!("`{feature}` is not part of the current plan"),
                None,
            ));
        }
        let limit = match dimension.map(|e| &e.value) {
            Some(EntitlementValue::Integer(n)) => Some(*n),
            _ => grant.quantity.map(i64::from),
        };
        if let (Some(requested), Some(limit)) = (quantity, limit)
            && requested > limit
        {
            return Err((
                Reason::QuantityExceeded,
                format!("{requested} requested, {limit} allowed"),
                Some(limit),
            ));
        }
        Ok(limit)
    }
}

/// Why a tenant whose best subscription has `status` is denied, unless it is active.
fn inactive(status: SubscriptionStatus) -> Option<(Reason, &'static str)> {
    match status {
        SubscriptionStatus::Active => None,
        SubscriptionStatus::Pending => Some((
            Reason::Pending,
            "the marketplace has not confirmed the subscription yet",
        )),
        SubscriptionStatus::Suspended => Some((
            Reason::Suspended,
            "the subscription is suspended (payment issue)",
        )),
        _ => Some((Reason::Cancelled, "the subscription has ended")),
    }
}
