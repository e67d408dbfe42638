//! The database away (issue 21): PostgreSQL unreachable for a while behind a proxy we unplug,
//! and SQLite on a full disk. Marketlink answers 5xx to whatever it could not store (the
//! marketplace retries; the vendor's client retries), says not ready meanwhile, and recovers
//! by itself once the database is back: no restart, nothing acknowledged that was not stored.

use std::time::{Duration, Instant};

use marketlink_e2e::{
    Stack,
    db_proxy::{DbProxy, host_port},
    drop_postgres_database, eventually, fresh_postgres_database, postgres_skipped,
    start_on_database,
};
use marketlink_engine::metering::hour_floor;
use marketlink_sandbox::aws::{AwsSandboxConfig, OfferKind, SubscriptionAction};
use marketlink_store::UsageHourState;
use reqwest::StatusCode;
use serde_json::json;

use crate::{
    aws::{subscription, wait_status},
    metering::{KEY, post, subscribed, ts},
};
use marketlink_core::{Clock, SubscriptionStatus, SystemClock};

const CLASSIC: &str = "mlsandboxclassic0000000001";

/// SNS retries every second for a minute, over HTTP only (the SQS copy of each message is
/// dropped from marketlink's configuration), so the retry that lands is SNS's own.
fn sns_retries_each_second(scenario: &mut AwsSandboxConfig) {
    scenario.sns_http_retry_delays_ms = vec![1_000; 60];
}

fn sns_over_http_only(config: &mut marketlink_cli::config::Config) {
    if let Some(aws) = config.aws.as_mut() {
        aws.sqs_queue_urls
            .retain(|u| !u.ends_with("sns-notifications"));
    }
    config.metering.flush_interval_secs = 1;
}

async fn readyz(stack: &Stack) -> Option<StatusCode> {
    reqwest::Client::new()
        .get(format!("{}/readyz", stack.app_url))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .ok()
        .map(|r| r.status())
}

/// Polls `/readyz` until it answers `want`, for at most 60 s; how long that took.
async fn time_until_readyz(stack: &Stack, want: StatusCode) -> Duration {
    let start = Instant::now();
    loop {
        if readyz(stack).await == Some(want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "/readyz never answered {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The statuses SNS got for the notifications it tried after the first `skip` attempts.
fn notification_statuses(stack: &Stack, skip: usize) -> Vec<Option<u16>> {
    stack
        .aws
        .http_deliveries()
        .iter()
        .skip(skip)
        .filter(|d| d.message_type == "Notification")
        .map(|d| d.status)
        .collect()
}

/// The start of the hour two hours back: closed, so the flusher bills it at once.
fn closed_hour() -> time::OffsetDateTime {
    hour_floor(SystemClock.now()) - time::Duration::hours(2)
}

/// Four units of usage at `at`.
fn usage_event(sub: &marketlink_core::Subscription, key: &str, at: time::OffsetDateTime) -> String {
    json!({"subscription_id": sub.id.to_string(), "dimension": "api_calls", "quantity": 4,
           "timestamp": ts(at), "idempotency_key": key})
    .to_string()
}

/// The hour's usage, `quantity` in all, was billed exactly once, and the hour is settled.
async fn billed_once(
    stack: &Stack,
    sub: &marketlink_core::Subscription,
    customer: &str,
    hour: time::OffsetDateTime,
    quantity: i64,
) {
    eventually("the hour is billed and settled", || async {
        stack.store.usage_hours_of(sub.id).await.is_ok_and(|hours| {
            let mut this_hour = hours.iter().filter(|h| h.hour == hour).peekable();
            this_hour.peek().is_some() && this_hour.all(|h| h.state == UsageHourState::Delivered)
        })
    })
    .await;
    let ledger: Vec<_> = stack
        .aws
        .metered_records()
        .into_iter()
        .filter(|r| r.customer_identifier.as_deref() == Some(customer) && r.hour == hour)
        .collect();
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0].quantity, quantity.to_string());
}

/// Connections cut and refused: PostgreSQL restarting, or its host down.
#[tokio::test]
async fn postgres_away_then_back_without_a_restart() {
    postgres_away_and_back("unplugged", DbProxy::unplug).await;
}

/// Connections open but silent: packets dropped between marketlink and PostgreSQL.
#[tokio::test]
async fn postgres_silent_then_back_without_a_restart() {
    postgres_away_and_back("stalled", DbProxy::stall).await;
}

async fn postgres_away_and_back(fault: &str, away: fn(&DbProxy)) {
    if postgres_skipped() {
        return;
    }
    let direct = fresh_postgres_database().await;
    let proxy = DbProxy::start(&host_port(&direct)).await;
    let stack = start_on_database(
        &proxy.url_for(&direct),
        sns_retries_each_second,
        sns_over_http_only,
    )
    .await;
    // A first buyer while all is well: SNS's subscription is confirmed on the way.
    let (metered, sub) = subscribed(&stack, &stack.store).await;
    eventually("the first notification is taken", || async {
        notification_statuses(&stack, 0).contains(&Some(200))
    })
    .await;

    away(&proxy);
    let to_not_ready = time_until_readyz(&stack, StatusCode::SERVICE_UNAVAILABLE).await;
    let before = stack.aws.http_deliveries().len();
    let buyer = stack
        .aws
        .purchase(CLASSIC, OfferKind::Subscription, "777788889999")
        .expect("purchase");
    stack
        .aws
        .send_subscription_event(&buyer.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .expect("sandbox event");
    let (status, body) = post(&stack, Some(KEY), usage_event(&sub, "away", closed_hour())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    // A few of SNS's retries land while the database is still away.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let refused = notification_statuses(&stack, before);
    assert!(
        refused.len() >= 2 && refused.iter().all(|s| *s == Some(503)),
        "every attempt while away is answered 503: {refused:?}"
    );

    proxy.plug();
    let to_ready = time_until_readyz(&stack, StatusCode::OK).await;
    eprintln!(
        "PostgreSQL {fault}: not ready after {to_not_ready:?}; ready again {to_ready:?} after plugging back"
    );
    // The pool's acquire timeout (5 s) bounds the first; the second is one new connection.
    assert!(to_not_ready < Duration::from_secs(10) && to_ready < Duration::from_secs(10));
    // SNS's next retry is taken and applied, by the same process.
    wait_status(&stack, &buyer, SubscriptionStatus::Active).await;
    assert!(subscription(&stack, &buyer).await.is_some());
    assert!(
        notification_statuses(&stack, before).contains(&Some(200)),
        "a retry was taken"
    );
    let (status, body) = post(&stack, Some(KEY), usage_event(&sub, "back", closed_hour())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    billed_once(&stack, &sub, &metered.customer_identifier, closed_hour(), 4).await;
    drop(stack);
    drop_postgres_database(&direct).await;
}

/// A small tmpfs of our own, unmounted when dropped: a disk that fills up.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` when this user may not mount (not root); CI runs the journeys as root.
    fn mount(megabytes: u32) -> Option<Self> {
        let dir = tempfile::tempdir().expect("mount point");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Self { dir })
    }

    /// Writes a filler file until the disk refuses more.
    fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.dir.path().join("filler")).expect("filler");
        let chunk = vec![0_u8; 64 * 1024];
        // Bounded: the disk is small, so it fills long before this many chunks.
        for _ in 0..100_000 {
            if file
                .write_all(&chunk)
                .and_then(|()| file.sync_all())
                .is_err()
            {
                return;
            }
        }
        panic!("the small disk never filled up");
    }

    fn free(&self) {
        std::fs::remove_file(self.dir.path().join("filler")).expect("free the disk");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// What the server logs from now on, on this thread: `#[tokio::test]` runs the server's tasks
/// on the test's own thread.
#[derive(Clone, Default)]
struct Logged(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logged {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logged {
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logged = Self::default();
        let writer = logged.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        (logged, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

#[tokio::test]
async fn sqlite_on_a_full_disk_acknowledges_nothing_it_did_not_store() {
    if !is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root (CI runs as root)");
        return;
    }
    let disk = SmallDisk::mount(32).expect("mount a small tmpfs (root)");
    let (logged, _capturing) = Logged::capture();
    let url = format!("sqlite:{}", disk.dir.path().join("e2e.db").display());
    let stack = start_on_database(&url, sns_retries_each_second, sns_over_http_only).await;
    let (metered, sub) = subscribed(&stack, &stack.store).await;
    eventually("the first notification is taken", || async {
        notification_statuses(&stack, 0).contains(&Some(200))
    })
    .await;

    disk.fill();
    // Room SQLite already holds (its write-ahead log's file) may take a few more batches:
    // each one answered 202 must be stored; the first that finds no room is answered 503.
    // They are for the current hour, which the flusher leaves alone while it is open.
    let mut accepted = 0;
    let (status, body) = loop {
        assert!(accepted < 500, "the full disk never refused a batch");
        let key = format!("full-{accepted}");
        let (status, body) = post(
            &stack,
            Some(KEY),
            usage_event(&sub, &key, SystemClock.now() - time::Duration::seconds(1)),
        )
        .await;
        if status != StatusCode::ACCEPTED {
            break (status, body);
        }
        accepted += 1;
        let stored = stack.store.usage_event_count(sub.id).await.expect("count");
        assert_eq!(stored, accepted, "a 202 is stored");
    };
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    let stored = stack.store.usage_event_count(sub.id).await.expect("count");
    assert_eq!(stored, accepted, "the refused batch is not stored");
    let log = logged.text();
    assert!(
        log.contains("the database's disk is full: nothing was stored")
            && log.contains("database or disk is full"),
        "the operator is told why: {log}"
    );
    let before = stack.aws.http_deliveries().len();
    let buyer = stack
        .aws
        .purchase(CLASSIC, OfferKind::Subscription, "777788889999")
        .expect("purchase");
    stack
        .aws
        .send_subscription_event(&buyer.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .expect("sandbox event");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refused = notification_statuses(&stack, before);
    assert!(
        !refused.is_empty() && refused.iter().all(|s| *s == Some(503)),
        "every attempt on a full disk is answered 503: {refused:?}"
    );
    assert!(subscription(&stack, &buyer).await.is_none());

    disk.free();
    wait_status(&stack, &buyer, SubscriptionStatus::Active).await;
    let (status, body) = post(&stack, Some(KEY), usage_event(&sub, "room", closed_hour())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    billed_once(&stack, &sub, &metered.customer_identifier, closed_hour(), 4).await;
}
