//! The in-memory entitlement index: who may use what, answered without I/O.

use marketlink_core::{
    Catalog, Entitlement, EntitlementValue, Listing, Marketplace, Plan, PlanId, Product, ProductId,
    SubscriptionId, SubscriptionStatus, TenantId, Term,
};
use marketlink_engine::entitlements::{EntitlementIndex, Grant, Reason};
use time::{Duration, macros::datetime};

const NOW: time::OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

fn index() -> EntitlementIndex {
    let plan = |id: &str, features: &[&str]| Plan {
        id: PlanId::new(id),
        name: None,
        features: features.iter().map(|f| f.to_string()).collect(),
        dimensions: vec![],
    };
    EntitlementIndex::new(std::sync::Arc::new(Catalog {
        products: vec![Product {
            id: ProductId::new("analytics"),
            name: "Analytics".into(),
            listings: vec![Listing {
                marketplace: Marketplace::AWS,
                product_code: "p".into(),
                listing_url: Some("https://marketplace.example/analytics".into()),
            }],
            plans: vec![
                plan("basic", &["dashboards"]),
                plan("pro", &["dashboards", "exports"]),
            ],
        }],
    }))
}

fn grant(status: SubscriptionStatus, plan: &str) -> Grant {
    Grant {
        subscription_id: SubscriptionId::new(),
        marketplace: "aws".into(),
        product_id: Some(ProductId::new("analytics")),
        product_code: "p".into(),
        status,
        plan_id: Some(PlanId::new(plan)),
        quantity: Some(10),
        free_trial: false,
        term: None,
        entitlements: vec![],
    }
}

fn analytics() -> ProductId {
    ProductId::new("analytics")
}

#[test]
fn every_reason() {
    let idx = index();
    let t = TenantId::new();
    let check = |feature: Option<&str>, quantity: Option<i64>| {
        idx.check(t, &analytics(), feature, quantity, NOW)
    };
    let none = check(None, None);
    assert_eq!((none.allowed, none.reason), (false, Reason::NotSubscribed));
    assert_eq!(
        none.subscribe_url.as_deref(),
        Some("https://marketplace.example/analytics"),
        "a denial says where to subscribe"
    );

    for (status, reason) in [
        (SubscriptionStatus::Pending, Reason::Pending),
        (SubscriptionStatus::Suspended, Reason::Suspended),
        (SubscriptionStatus::UnsubscribePending, Reason::Cancelled),
        (SubscriptionStatus::Cancelled, Reason::Cancelled),
        (SubscriptionStatus::Failed, Reason::Cancelled),
    ] {
        let idx = index();
        idx.upsert(t, grant(status, "basic"));
        let d = idx.check(t, &analytics(), Some("dashboards"), None, NOW);
        assert_eq!((d.allowed, d.reason), (false, reason), "{status}");
    }

    let mut active = grant(SubscriptionStatus::Active, "basic");
    idx.upsert(t, active.clone());
    assert!(check(Some("dashboards"), None).allowed);
    assert!(check(None, None).allowed);
    let exports = check(Some("exports"), None);
    assert_eq!(exports.reason, Reason::FeatureNotInPlan);
    assert!(exports.subscribe_url.is_some());
    let too_many = check(Some("dashboards"), Some(11));
    assert_eq!(
        (too_many.reason, too_many.limit),
        (Reason::QuantityExceeded, Some(10))
    );
    assert!(check(Some("dashboards"), Some(10)).allowed);

    // A contract dimension grants its feature and sets the limit.
    active.entitlements = vec![Entitlement {
        dimension: "seats".into(),
        value: EntitlementValue::Integer(25),
        expires_at: Some(NOW + Duration::days(30)),
    }];
    idx.upsert(t, active.clone());
    assert!(check(Some("seats"), Some(25)).allowed);
    assert_eq!(
        check(Some("seats"), Some(26)).reason,
        Reason::QuantityExceeded
    );

    // An expired contract denies everything.
    active.term = Some(Term {
        start: None,
        end: Some(NOW - Duration::hours(1)),
        unit: None,
    });
    idx.upsert(t, active.clone());
    assert_eq!(
        check(Some("dashboards"), None).reason,
        Reason::ContractExpired
    );
    active.term = None;
    active.entitlements[0].expires_at = Some(NOW - Duration::seconds(1));
    idx.upsert(t, active);
    assert_eq!(check(None, None).reason, Reason::ContractExpired);
}

#[test]
fn any_active_agreement_allows_and_tenants_are_separate() {
    let idx = index();
    let t = TenantId::new();
    idx.upsert(t, grant(SubscriptionStatus::Active, "basic"));
    idx.upsert(t, grant(SubscriptionStatus::Active, "pro"));
    assert!(
        idx.check(t, &analytics(), Some("exports"), None, NOW)
            .allowed
    );
    let other = TenantId::new();
    assert_eq!(
        idx.check(other, &analytics(), Some("dashboards"), None, NOW)
            .reason,
        Reason::NotSubscribed
    );
    assert_eq!(idx.len(), 2);
}
