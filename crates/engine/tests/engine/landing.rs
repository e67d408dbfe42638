//! Landing tokens cost the marketplace one Resolve, however often they are landed.

use std::sync::atomic::Ordering;

use marketlink_core::LandingToken;
use marketlink_engine::{ChangePolicy, LandingError};

use crate::harness::harness;

fn token(value: &str) -> LandingToken {
    LandingToken {
        token: value.into(),
    }
}

#[tokio::test]
async fn a_token_is_resolved_once_for_concurrent_and_repeated_landings() {
    let h = harness(ChangePolicy::default()).await;
    let good = token("good-1");
    let landings = (0..8).map(|_| h.engine.resolve_landing("test", &good));
    for landed in futures_util::future::join_all(landings).await {
        assert_eq!(landed.unwrap().subscription.external_id, "good-1");
    }
    h.engine.resolve_landing("test", &good).await.unwrap();
    assert_eq!(h.provider.resolve_calls.load(Ordering::SeqCst), 1);

    // Lasting refusals are kept too; another token is another call.
    for _ in 0..3 {
        assert!(matches!(
            h.engine.resolve_landing("test", &token("forged")).await,
            Err(LandingError::InvalidToken(_))
        ));
        assert!(matches!(
            h.engine.resolve_landing("test", &token("expired")).await,
            Err(LandingError::ExpiredToken(_))
        ));
    }
    h.engine
        .resolve_landing("test", &token("good-2"))
        .await
        .unwrap();
    assert_eq!(h.provider.resolve_calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_passing_failure_is_asked_again() {
    let h = harness(ChangePolicy::default()).await;
    for _ in 0..2 {
        assert!(matches!(
            h.engine.resolve_landing("test", &token("busy")).await,
            Err(LandingError::Unavailable(_))
        ));
    }
    assert_eq!(h.provider.resolve_calls.load(Ordering::SeqCst), 2);
}
