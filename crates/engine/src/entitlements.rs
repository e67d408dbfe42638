//! "May tenant T use feature F of product P?", answered from memory.
//!
//! The index holds every tenant's subscriptions (status, plan, quantity, term, entitlements)
//! and is kept in step with the database by loading what changed since its watermark (which
//! also picks up changes made by other replicas). A check is a hash lookup and a scan of the
//! tenant's few subscriptions: no I/O. Until its first load has caught up the index is not
//! *warm*, and the engine answers checks from the database instead (ADR 0022).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
};

use marketlink_core::{
    Catalog, Entitlement, EntitlementValue, PlanId, ProductId, SubscriptionId, SubscriptionStatus,
    TenantId, Term,
};
use marketlink_store::{GrantPage, GrantRow, Store, StoreError};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// Rows per page when loading: large enough to amortise a query, small enough that applying
/// one holds the write lock for a few milliseconds only.
const PAGE: u32 = 10_000;

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

impl From<GrantRow> for Grant {
    fn from(row: GrantRow) -> Self {
        Self {
            subscription_id: row.subscription_id,
            marketplace: row.marketplace,
            product_id: row.product_id,
            product_code: row.product_code,
            status: row.status,
            plan_id: row.plan_id,
            quantity: row.quantity,
            free_trial: row.free_trial,
            term: row.term,
            entitlements: row.entitlements,
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
    /// One sync at a time: two interleaved ones could apply an older page after a newer one.
    syncing: tokio::sync::Mutex<()>,
    /// Set once a sync has caught up with the database; never cleared.
    warm: AtomicBool,
    page: u32,
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
            syncing: tokio::sync::Mutex::new(()),
            warm: AtomicBool::new(false),
            page: PAGE,
        }
    }

    /// Loads `rows` subscriptions per query (at least one).
    pub fn with_page_size(mut self, rows: u32) -> Self {
        self.page = rows.max(1);
        self
    }

    /// Whether a sync has caught up with the database: until then the index may lack
    /// subscriptions, and checks must be answered from the database.
    pub fn is_warm(&self) -> bool {
        self.warm.load(Ordering::Acquire)
    }

    /// Adds or replaces one subscription.
    pub fn upsert(&self, tenant: TenantId, grant: Grant) {
        let mut tenants = self.tenants.write().unwrap_or_else(|p| p.into_inner());
        upsert_into(&mut tenants, tenant, grant);
    }

    /// Applies one page under a single write lock.
    fn apply(&self, rows: Vec<GrantRow>) {
        let mut tenants = self.tenants.write().unwrap_or_else(|p| p.into_inner());
        for row in rows {
            let tenant = row.tenant_id;
            upsert_into(&mut tenants, tenant, Grant::from(row));
        }
    }

    /// Loads everything that changed since the last sync; returns how many subscriptions.
    /// The first sync that reaches the end makes the index warm.
    ///
    /// The next page is fetched and decoded on another task while this one is applied, so
    /// the database and the index work at the same time.
    pub async fn sync(&self, store: &Store) -> Result<usize, StoreError> {
        let _one = self.syncing.lock().await;
        let (since, after) = {
            let w = self.watermark.lock().unwrap_or_else(|p| p.into_inner());
            (w.at, w.id)
        };
        let mut next = fetch(store, since, after, self.page);
        let mut loaded = 0;
        loop {
            let page = next
                .await
                .map_err(|e| StoreError::Unsupported(format!("index page task failed: {e}")))??;
            let Some((at, id)) = page.last else {
                self.warm.store(true, Ordering::Release);
                return Ok(loaded);
            };
            next = fetch(store, at, Some(id), self.page);
            loaded += page.rows.len();
            self.apply(page.rows);
            let mut w = self.watermark.lock().unwrap_or_else(|p| p.into_inner());
            w.at = at;
            w.id = Some(id);
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
        // Walked in place under the read lock: the hot path collects nothing.
        let grants = tenants.get(&tenant).into_iter().flatten();
        self.decide_over(grants, product, feature, quantity, now)
    }

    /// The decision over one tenant's `grants` (from the index or read from the database).
    pub fn decide(
        &self,
        grants: &[&Grant],
        product: &ProductId,
        feature: Option<&str>,
        quantity: Option<i64>,
        now: OffsetDateTime,
    ) -> Decision {
        self.decide_over(grants.iter().copied(), product, feature, quantity, now)
    }

    fn decide_over<'g>(
        &self,
        grants: impl Iterator<Item = &'g Grant> + Clone,
        product: &ProductId,
        feature: Option<&str>,
        quantity: Option<i64>,
        now: OffsetDateTime,
    ) -> Decision {
        let grants = grants.filter(|g| g.product_id.as_ref() == Some(product));
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
        let Some(best) = grants.clone().max_by_key(|g| rank(g.status)) else {
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
        for grant in grants.filter(|g| g.status == SubscriptionStatus::Active) {
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

fn upsert_into(tenants: &mut HashMap<TenantId, Vec<Grant>>, tenant: TenantId, grant: Grant) {
    let grants = tenants.entry(tenant).or_default();
    match grants
        .iter_mut()
        .find(|g| g.subscription_id == grant.subscription_id)
    {
        Some(existing) => *existing = grant,
        None => {
            // Most tenants hold one or two subscriptions: `push` alone would reserve four
            // grants (about 0.8 kB) per tenant, three quarters of the index's memory at 100k
            // subscriptions (issue 22, a heap profile of `marketlink bench day`).
            grants.reserve_exact(1);
            grants.push(grant);
        }
    }
}

/// Fetches one page on its own task (decoding included).
fn fetch(
    store: &Store,
    since: i64,
    after: Option<Uuid>,
    page: u32,
) -> tokio::task::JoinHandle<Result<GrantPage, StoreError>> {
    let store = store.clone();
    tokio::spawn(async move { store.changed_grants(since, after, page).await })
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
