//! marketlink-core: the marketplace-neutral domain of marketlink.
//!
//! Subscriptions and their state machine, tenants, the product catalog, usage records,
//! entitlements, and the [`MarketplaceProvider`] trait every marketplace adapter implements.
//! Pure: no web framework, no database, no HTTP client. Time comes in through [`Clock`].
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod apikey;
pub mod catalog;
pub mod clock;
pub mod diagnosis;
pub mod directory;
pub mod entitlement;
pub mod event;
pub mod ids;
pub mod marketplace;
pub mod provider;
pub mod quantity;
pub mod redact;
pub mod rules;
pub mod secret;
pub mod subscription;
pub mod survey;
pub mod tenant;
pub mod usage;

pub use apikey::{ApiKey, Scope};
pub use catalog::{Catalog, Dimension, DimensionKind, Listing, Plan, Product};
pub use clock::{Clock, ManualClock, SystemClock};
pub use diagnosis::{Diagnosis, DiagnosisStatus, DiagnosisSummary};
pub use directory::{Alias, EmptyDirectory, MemoryDirectory, SubscriptionDirectory};
pub use entitlement::{Entitlement, EntitlementValue};
pub use event::{EventKind, MarketplaceEvent};
pub use ids::{PlanId, ProductId, SubscriptionId, TenantId, UserId};
pub use marketplace::Marketplace;
pub use provider::{
    AuthenticatedMessage, AvailablePlan, BuyerIdentity, BuyerSignIn, Capabilities, ChangeAnswer,
    ChangeOutcome, ChangeProgress, InboundEndpoint, InboundMessage, LandingToken,
    MarketplaceProvider, ProviderError, PulledMessage, PurchaseParty, ResolvedPurchase,
    SignInMismatch, SignInStart,
};
pub use quantity::Quantity;
pub use rules::{MarketplaceRules, UsageRules};
pub use secret::Secret;
pub use subscription::{
    ExternalRef, IllegalTransition, Lifecycle, Subscription, SubscriptionStatus, Term, Transition,
};
pub use survey::MarketplaceView;
pub use tenant::{EmailVerified, PeopleChangeRefused, Role, Tenant, User, VerificationMethod};
pub use usage::{UsageAllocation, UsageOutcome, UsageRecord};
