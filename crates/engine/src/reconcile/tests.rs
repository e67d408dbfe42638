//! Unit tests of the pure parts: the safe lifecycle step and entitlement differences.
use super::*;
use SubscriptionStatus::*;

#[test]
fn never_brings_an_ended_subscription_back() {
    assert!(lifecycle_towards(Cancelled, Active).is_err());
    assert!(lifecycle_towards(Failed, Active).is_err());
    assert!(lifecycle_towards(UnsubscribePending, Active).is_err());
    assert_eq!(lifecycle_towards(Pending, Active), Ok(Lifecycle::Activate));
    assert_eq!(
        lifecycle_towards(Suspended, Active),
        Ok(Lifecycle::Reinstate)
    );
    assert_eq!(lifecycle_towards(Active, Cancelled), Ok(Lifecycle::Cancel));
    assert_eq!(lifecycle_towards(Active, Suspended), Ok(Lifecycle::Suspend));
    assert!(lifecycle_towards(Active, Pending).is_err());
}

fn seats(value: i64, expires_at: Option<OffsetDateTime>) -> Entitlement {
    Entitlement {
        dimension: "seats".into(),
        value: marketlink_core::EntitlementValue::Integer(value),
        expires_at,
    }
}

#[test]
fn entitlements_agree_regardless_of_order_and_below_the_millisecond() {
    let at = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
    let admins = Entitlement {
        dimension: "admins".into(),
        value: marketlink_core::EntitlementValue::Boolean(true),
        expires_at: None,
    };
    let ours = [seats(10, Some(at)), admins.clone()];
    let theirs = [admins, seats(10, Some(at + Duration::microseconds(300)))];
    assert_eq!(entitlement_differences(&ours, &theirs), []);
}

#[test]
fn each_differing_dimension_is_named_with_both_sides() {
    let at = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
    let later = at + Duration::seconds(1);
    let differences = entitlement_differences(&[seats(10, Some(at))], &[seats(10, Some(later))]);
    assert_eq!(
        differences,
        [EntitlementDifference {
            dimension: "seats".into(),
            ours: Some(seats(10, Some(at))),
            theirs: Some(seats(10, Some(later))),
        }]
    );
    let differences = entitlement_differences(&[], &[seats(7, None)]);
    assert_eq!(differences.len(), 1);
    assert_eq!(differences[0].ours, None);
    assert_eq!(
        entitlement_differences(&[seats(7, None)], &[seats(8, None)]).len(),
        1
    );
}
