use time::{Duration, OffsetDateTime};

use super::*;

fn fault(matching: &str, kind: FaultKind) -> FaultConfig {
    FaultConfig {
        matching: matching.into(),
        kind,
        retry_after_secs: None,
        late_ms: None,
        calls: None,
        start_after_secs: None,
        duration_secs: None,
    }
}

#[test]
fn validation_names_what_is_wrong() {
    let check = |mut f: FaultConfig, side| f.validate(side).map(|()| f);
    let cert = check(fault("sns-certificate", FaultKind::Unavailable), Side::Aws).unwrap();
    assert_eq!(cert.matching, SIGNING_CERT);
    let err = check(fault("BatchMeterUsag", FaultKind::Throttling), Side::Aws).unwrap_err();
    assert!(err.contains("BatchMeterUsage"), "{err}");
    let err = check(
        fault("BatchMeterUsage", FaultKind::TooManyRequests),
        Side::Aws,
    )
    .unwrap_err();
    assert!(err.contains("ThrottlingException"), "{err}");
    let err = check(
        fault("/api/usageEvent", FaultKind::Throttling),
        Side::Microsoft,
    )
    .unwrap_err();
    assert!(err.contains("429"), "{err}");
    let err = check(
        fault("/api/usageEvent", FaultKind::TooManyRequests),
        Side::Microsoft,
    )
    .unwrap_err();
    assert!(err.contains("retry_after_secs is needed"), "{err}");
    let err = check(fault("usageEvent", FaultKind::ServerError), Side::Microsoft).unwrap_err();
    assert!(err.contains("path suffix"), "{err}");
    let err = check(fault("jwks", FaultKind::Late), Side::Microsoft).unwrap_err();
    assert!(err.contains("late_ms is needed"), "{err}");
    let mut zero = fault("*", FaultKind::Reset);
    zero.calls = Some(0);
    assert!(check(zero, Side::Aws).unwrap_err().contains("calls"));
    let mut stray = fault("*", FaultKind::Reset);
    stray.late_ms = Some(10);
    assert!(
        check(stray, Side::Aws)
            .unwrap_err()
            .contains("only for kind")
    );
}

#[test]
fn windows_and_counts_decide_what_is_caught() {
    let t0 = OffsetDateTime::UNIX_EPOCH;
    let mut later = fault("BatchMeterUsage", FaultKind::Unavailable);
    later.start_after_secs = Some(10);
    later.duration_secs = Some(5);
    let mut twice = fault("GetEntitlements", FaultKind::Throttling);
    twice.calls = Some(2);
    let switches = Switches::from_scenario(&[later, twice], t0);
    let op = |name: &'static str| move |m: &str| m == name;
    assert_eq!(switches.hit(t0, op("BatchMeterUsage")), None, "not yet");
    let at = t0 + Duration::seconds(10);
    assert_eq!(
        switches.hit(at, op("BatchMeterUsage")).map(|f| f.kind),
        Some(FaultKind::Unavailable)
    );
    assert_eq!(
        switches.hit(t0 + Duration::seconds(15), op("BatchMeterUsage")),
        None
    );
    for _ in 0..2 {
        assert!(switches.hit(t0, op("GetEntitlements")).is_some());
    }
    assert_eq!(switches.hit(t0, op("GetEntitlements")), None, "used up");
    let views = switches.list(t0 + Duration::seconds(20));
    let summary: Vec<_> = views.iter().map(|v| (v.status, v.caught)).collect();
    assert_eq!(summary, [("ended", 1), ("ended", 2)]);
}

#[test]
fn stop_ends_one_or_all() {
    let t0 = OffsetDateTime::UNIX_EPOCH;
    let switches = Switches::default();
    let a = switches.start(fault("*", FaultKind::Reset), t0);
    let b = switches.start(fault("ReceiveMessage", FaultKind::ServerError), t0);
    assert_eq!(
        switches.hit(t0, |_| true).map(|f| f.kind),
        Some(FaultKind::Reset)
    );
    assert!(switches.stop(a));
    assert!(!switches.stop(99));
    assert_eq!(
        switches.hit(t0, |m| m == "ReceiveMessage").map(|f| f.kind),
        Some(FaultKind::ServerError)
    );
    switches.stop_all();
    assert_eq!(switches.hit(t0, |_| true), None);
    let statuses: Vec<_> = switches.list(t0).iter().map(|v| (v.id, v.status)).collect();
    assert_eq!(statuses, [(a, "ended"), (b, "ended")]);
}

#[test]
fn the_form_leaves_blank_fields_out() {
    let form = FaultForm {
        matching: "/api/usageEvent".into(),
        kind: "429".into(),
        retry_after_secs: "7".into(),
        late_ms: String::new(),
        calls: " 3 ".into(),
        start_after_secs: String::new(),
        duration_secs: String::new(),
    };
    let f = form.fault(Side::Microsoft).unwrap();
    assert_eq!(
        (f.retry_after_secs, f.calls, f.duration_secs),
        (Some(7), Some(3), None)
    );
    let bad = FaultForm {
        calls: "three".into(),
        ..form
    };
    assert!(
        bad.fault(Side::Microsoft)
            .unwrap_err()
            .contains("calls must be a whole number")
    );
}
