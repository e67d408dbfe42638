//! Buyer accounts: who signs in, who is signed in as the store knows them now, and what their
//! tenant holds (the account page and one subscription's page).

use marketlink_core::{
    AvailablePlan, Capabilities, Entitlement, Marketplace, MarketplaceRules, Subscription,
    SubscriptionId, Tenant, TenantId, User, UserId,
};
use marketlink_store::{StoreError, SubscriptionFilter, TimelineEntry};

use crate::Engine;

/// A user found by email for a password sign-in, with the hash to check (none for a user who
/// never set a password).
pub struct SignInCandidate {
    pub user: User,
    pub password_hash: Option<String>,
}

/// A tenant and its subscriptions, each with its stored entitlements.
pub struct AccountOverview {
    pub tenant: Tenant,
    pub subscriptions: Vec<(Subscription, Vec<Entitlement>)>,
}

/// What one subscription's page shows besides the subscription itself.
pub struct SubscriptionDetail {
    pub rules: MarketplaceRules,
    pub capabilities: Capabilities,
    pub entitlements: Vec<Entitlement>,
    /// Newest last, at most 200.
    pub timeline: Vec<TimelineEntry>,
    /// Plans the subscription may move to, when asked for and the marketplace lists them.
    pub plans: Vec<AvailablePlan>,
}

/// How many subscriptions the account page lists.
const ACCOUNT_PAGE_SUBSCRIPTIONS: u32 = 200;

impl Engine {
    /// The user a session names, if they still exist and still belong to `tenant`. A session
    /// whose user was removed (or moved to another tenant) opens nothing any more, even though
    /// its cookie is still valid.
    pub async fn signed_in_user(
        &self,
        user: UserId,
        tenant: TenantId,
    ) -> Result<Option<User>, StoreError> {
        match self.store.get_user(user).await {
            Ok(found) if found.tenant_id == tenant => Ok(Some(found)),
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The user who signs in with `email` (any case), for the caller to check the password
    /// against (hashing is CPU-heavy and stays off the async runtime, in the caller).
    pub async fn sign_in_candidate(
        &self,
        email: &str,
    ) -> Result<Option<SignInCandidate>, StoreError> {
        let found = self.store.find_user_by_email(email).await?;
        Ok(found.map(|(user, password_hash)| SignInCandidate {
            user,
            password_hash,
        }))
    }

    /// The account page: the tenant and its subscriptions with their entitlements.
    pub async fn account_overview(&self, tenant: TenantId) -> Result<AccountOverview, StoreError> {
        let tenant = self.store.get_tenant(tenant).await?;
        let filter = SubscriptionFilter {
            tenant_id: Some(tenant.id),
            limit: ACCOUNT_PAGE_SUBSCRIPTIONS,
            ..Default::default()
        };
        let mut subscriptions = Vec::new();
        for s in self.store.list_subscriptions(&filter).await? {
            // Entitlements are details: a failure to read them leaves the row without them.
            let entitlements = self.store.entitlements(s.id).await.unwrap_or_default();
            subscriptions.push((s, entitlements));
        }
        Ok(AccountOverview {
            tenant,
            subscriptions,
        })
    }

    /// The subscription if it belongs to `tenant`; another tenant's is reported as missing.
    pub async fn tenant_subscription(
        &self,
        tenant: TenantId,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        match self.store.get_subscription(id).await {
            Ok(s) if s.tenant_id == Some(tenant) => Ok(Some(s)),
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// What the marketplace lets the vendor do (none for a marketplace no longer configured).
    pub fn capabilities_of(&self, marketplace: &Marketplace) -> Capabilities {
        self.providers
            .get(marketplace)
            .map(|p| p.capabilities())
            .unwrap_or_default()
    }

    /// The facts one subscription's page shows. Best effort: each part the store or the
    /// marketplace cannot give now is left empty rather than failing the page.
    pub async fn subscription_detail(
        &self,
        s: &Subscription,
        with_plans: bool,
    ) -> SubscriptionDetail {
        let provider = self.providers.get(&s.external.marketplace);
        let mut plans = Vec::new();
        if with_plans && let Some(provider) = provider {
            match provider.available_plans(&s.external).await {
                Ok(available) => plans = available,
                Err(error) => tracing::warn!(%error, "cannot list available plans"),
            }
        }
        SubscriptionDetail {
            rules: self.marketplace_rules(s.external.marketplace.as_str()),
            capabilities: self.capabilities_of(&s.external.marketplace),
            entitlements: self.store.entitlements(s.id).await.unwrap_or_default(),
            timeline: self.store.timeline(s.id, 200).await.unwrap_or_default(),
            plans,
        }
    }
}
