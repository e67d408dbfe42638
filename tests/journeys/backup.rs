//! Backup and restore (issue 21), on SQLite (`marketlink backup`) and PostgreSQL (`pg_dump -Fc`,
//! `pg_restore`): a backup taken while serving, with usage in flight; usage billed after it;
//! then a restore, which forgets that usage and a cancellation made after the backup. The
//! vendor re-sends its usage with the same idempotency keys: marketlink bills it again and each
//! marketplace de-duplicates it (AWS answers an identical record with the first record's id,
//! Microsoft with 409 / `Duplicate` and the accepted event), so every (customer, dimension,
//! hour) stays billed once. An AWS hour that closed after the backup is zero-filled by the
//! restored server before the resend arrives (AWS: `DuplicateRecord`, a mismatch); the resend
//! corrects it. Reconciliation brings both cancellations back: Microsoft's from List
//! Subscriptions, AWS's from the Agreement API (SearchAgreements says the agreement was
//! cancelled, GetAgreementEntitlements that its licence is revoked).

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use marketlink_cli::{config::Config, run};
use marketlink_core::{
    Clock, Lifecycle, Marketplace, ProductId, Subscription, SubscriptionStatus, SystemClock,
};
use marketlink_e2e::{Stack, azure_land_and_sign_in, browser_trusting, eventually};
use marketlink_engine::{metering::hour_floor, reconcile::Action};
use marketlink_sandbox::{
    aws::{OfferKind, Purchase, SubscriptionAction},
    azure::MarketplaceAction,
    outage::OutageKind,
};
use marketlink_store::{Store, StoreOptions, UsageHour, UsageHourState};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use crate::metering::{KEY, external, post, subscribed, ts};
use crate::outages::AZURE_USAGE;

const CLASSIC: &str = "mlsandboxclassic0000000001";
const CAROL: &str = "22222222-bbbb-4ccc-8ddd-000000000003";
/// The AWS buyer who cancels after the backup (the usage buyer is `metering::BUYER`).
const LEAVER: &str = "777788889999";

/// How the journey backs up and restores.
enum Backend {
    /// `marketlink backup` to this file; restored over the server's database file.
    Sqlite(PathBuf),
    /// `pg_dump -Fc` to this file; restored into a fresh database with `pg_restore`.
    Postgres(PathBuf),
}

/// The subscriptions of the journey.
struct Cast {
    aws: (Purchase, Subscription),
    azure: Subscription,
    aws_leaver: (Purchase, Subscription),
    azure_leaver: Subscription,
}

/// One usage event per metered subscription for `hour`, keyed by `label`: what the vendor's
/// product sent then and re-sends after the restore.
fn events(cast: &Cast, label: &str, hour: OffsetDateTime, aws_qty: u64, azure_qty: u64) -> Value {
    let event = |sub: &Subscription, qty: u64| {
        json!({"subscription_id": sub.id.to_string(), "dimension": "api_calls",
               "quantity": qty, "timestamp": ts(hour + Duration::minutes(11)),
               "idempotency_key": format!("{label}-{}", sub.id)})
    };
    json!([event(&cast.aws.1, aws_qty), event(&cast.azure, azure_qty)])
}

async fn send(stack: &Stack, events: Value) -> Value {
    let (status, body) = post(stack, Some(KEY), json!({ "events": events }).to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body
}

async fn hours_of(store: &Store, sub: &Subscription) -> Vec<UsageHour> {
    store.usage_hours_of(sub.id).await.unwrap()
}

async fn hour_of(store: &Store, sub: &Subscription, hour: OffsetDateTime) -> Option<UsageHour> {
    hours_of(store, sub)
        .await
        .into_iter()
        .find(|h| h.hour == hour)
}

async fn wait_delivered(stack: &Stack, cast: &Cast, hour: OffsetDateTime) {
    for sub in [&cast.aws.1, &cast.azure] {
        eventually("the hour is delivered", || async {
            hour_of(&stack.store, sub, hour)
                .await
                .is_some_and(|h| h.state == UsageHourState::Delivered)
        })
        .await;
    }
}

type Billed = Vec<(String, OffsetDateTime, String, String)>;

/// Both marketplaces' ledgers for the journey's usage buyers, up to `through` (later hours
/// hold AWS's zero records): (who, hour, quantity, record id).
async fn ledger(stack: &Stack, cast: &Cast, through: OffsetDateTime) -> Billed {
    let customer = &cast.aws.0.customer_identifier;
    let mut rows: Vec<_> = stack
        .aws
        .metered_records()
        .into_iter()
        .filter(|r| r.customer_identifier.as_ref() == Some(customer) && r.hour <= through)
        .map(|r| ("aws".into(), r.hour, r.quantity, r.metering_record_id))
        .collect();
    let resource = cast.azure.external.external_id.as_str();
    rows.extend(
        stack
            .azure
            .usage_events()
            .await
            .into_iter()
            .filter(|e| e.resource_id.to_string() == resource && e.effective_start_time <= through)
            .map(|e| {
                let hour = hour_floor(e.effective_start_time);
                let id = e.usage_event_id.to_string();
                ("azure".into(), hour, e.quantity.to_string(), id)
            }),
    );
    rows.sort();
    rows
}

/// An active AWS subscription of `account`, as `metering::subscribed` makes one.
async fn aws_subscribed(stack: &Stack, account: &str) -> (Purchase, Subscription) {
    let purchase = stack
        .aws
        .purchase(CLASSIC, OfferKind::Subscription, account)
        .unwrap();
    let mut external = external(&purchase);
    external.customer_account_id = Some(account.into());
    let mut sub = Subscription::pending(external, SystemClock.now());
    sub.product_id = Some(ProductId::new("analytics"));
    let sub = stack.store.upsert_subscription(&sub).await.unwrap();
    stack
        .aws
        .send_subscription_event(&purchase.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    stack
        .store
        .apply_lifecycle(sub.id, Lifecycle::Activate, SystemClock.now())
        .await
        .unwrap();
    (purchase, sub)
}

async fn cast(stack: &Stack) -> Cast {
    let aws = subscribed(stack, &stack.store).await;
    let alice = browser_trusting(&stack.azure.ca_pem);
    let id = crate::azure::active_subscription(stack, &alice, "pro", Some(3)).await;
    let carol = browser_trusting(&stack.azure.ca_pem);
    let (carol_id, landing) = crate::azure::buy(stack, "basic", None, CAROL).await;
    azure_land_and_sign_in(&carol, &landing, CAROL).await;
    crate::azure::sign_up(stack, &carol, "carol@fabrikam.example").await;
    crate::azure::wait_for(stack, &carol_id, "Carol's subscription is active", |s| {
        s.status == SubscriptionStatus::Active
    })
    .await;
    let find = |id: String| async move {
        let found = stack.store.find_subscription(&Marketplace::AZURE, &id);
        found.await.unwrap().unwrap()
    };
    Cast {
        aws,
        azure: find(id).await,
        aws_leaver: aws_subscribed(stack, LEAVER).await,
        azure_leaver: find(carol_id).await,
    }
}

/// Takes the backup while the server runs; its size in bytes.
async fn take_backup(stack: &Stack, backend: &Backend) -> u64 {
    match backend {
        Backend::Sqlite(file) => {
            run::backup(stack.config.clone(), file).await.unwrap();
            // A second run never overwrites the first backup.
            let again = run::backup(stack.config.clone(), file).await.unwrap_err();
            assert!(format!("{again:#}").contains("already exists"), "{again:#}");
            std::fs::metadata(file).unwrap().len()
        }
        Backend::Postgres(file) => {
            // Off the runtime's thread, so that the server keeps serving during the dump.
            let (url, out) = (stack.config.database.url.clone(), file.clone());
            tokio::task::spawn_blocking(move || tool("pg_dump", &["-Fc", "-f", path(&out), &url]))
                .await
                .unwrap();
            std::fs::metadata(file).unwrap().len()
        }
    }
}

fn path(file: &Path) -> &str {
    file.to_str().unwrap()
}

/// Runs a PostgreSQL client tool from /usr/bin, which CI installs with the server.
fn tool(name: &str, args: &[&str]) {
    let out = std::process::Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{name} (PostgreSQL client tools): {e}"));
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stops the server and puts the backup in place; the restored database's URL. SQLite: the
/// backup replaces the database file, and the newer database's WAL and shared-memory files
/// go (SQLite would otherwise read the newer WAL's pages into the restored file).
async fn restore(stack: &mut Stack, backend: &Backend) -> String {
    stack.stop_server().await;
    match backend {
        Backend::Sqlite(file) => {
            let url = stack.config.database.url.clone();
            let db = PathBuf::from(url.trim_start_matches("sqlite:"));
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
            }
            std::fs::copy(file, &db).unwrap();
            url
        }
        Backend::Postgres(file) => {
            let url = marketlink_e2e::fresh_postgres_database().await;
            tool("pg_restore", &["--no-owner", "-d", &url, path(file)]);
            url
        }
    }
}

/// Moves the subscription's zero-fill cursor in the restored database back to `hour`, where a
/// backup taken before `hour` closed holds it: the journey runs in seconds, not hours.
async fn cursor_back(url: &str, sub: &Subscription, hour: OffsetDateTime) {
    use sqlx::Connection;
    const SQL: &str = "UPDATE usage_cursors SET zero_from = $1 WHERE subscription_id = $2";
    let ms = hour.unix_timestamp() * 1_000;
    let moved = if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        let query = sqlx::query(SQL).bind(ms).bind(sub.id.0);
        query.execute(&mut conn).await.unwrap().rows_affected()
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let query = sqlx::query(SQL).bind(ms).bind(sub.id.0);
        query.execute(&mut conn).await.unwrap().rows_affected()
    };
    assert_eq!(moved, 1, "the subscription has a zero-fill cursor");
}

/// Short leases: an hour caught mid-call by the backup is taken over seconds after the
/// restore rather than after the default five minutes.
fn tune(config: &mut Config) {
    config.metering.lease_secs = 5;
}

#[tokio::test]
async fn sqlite_backup_restore_and_resend_bill_each_hour_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut stack = marketlink_e2e::start_full(|_| {}, |_| {}, tune).await;
    let backend = Backend::Sqlite(dir.path().join("marketlink-backup.db"));
    backup_restore_resend(&mut stack, &backend).await;
}

#[tokio::test]
async fn postgres_dump_restore_and_resend_bill_each_hour_once() {
    if marketlink_e2e::postgres_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = marketlink_e2e::fresh_postgres_database().await;
    let mut stack = marketlink_e2e::start_on_database(&url, |_| {}, tune).await;
    let backend = Backend::Postgres(dir.path().join("marketlink.dump"));
    backup_restore_resend(&mut stack, &backend).await;
    let restored = stack.config.database.url.clone();
    drop(stack);
    marketlink_e2e::drop_postgres_database(&url).await;
    marketlink_e2e::drop_postgres_database(&restored).await;
}

async fn backup_restore_resend(stack: &mut Stack, backend: &Backend) {
    let cast = cast(stack).await;
    let now = hour_floor(SystemClock.now());
    let (h_old, h_pre, h_post) = (
        now - Duration::hours(4),
        now - Duration::hours(3),
        now - Duration::hours(2),
    );
    let (old, pre, post) = (
        events(&cast, "old", h_old, 2, 3),
        events(&cast, "pre", h_pre, 5, 7),
        events(&cast, "post", h_post, 11, 13),
    );
    before_the_backup(stack, &cast, (&old, h_old), (&pre, h_pre)).await;
    let started = Instant::now();
    let bytes = take_backup(stack, backend).await;
    let backup_ms = started.elapsed().as_millis();
    after_the_backup(stack, &cast, h_pre, post.clone()).await;
    let billed = ledger(stack, &cast, h_post).await;
    assert_eq!(
        billed.len(),
        6,
        "three hours on each marketplace: {billed:#?}"
    );

    let url = restore(stack, backend).await;
    restored_state(&url, &cast, (h_old, h_pre, h_post)).await;
    cursor_back(&url, &cast.aws.1, h_post).await;
    let restarted = Instant::now();
    stack.start_server_on(&url).await;
    // Before the vendor re-sends, the restored server zero-fills the AWS hour it has no usage
    // for; AWS holds 11 for it and answers DuplicateRecord.
    eventually(
        "the zero-filled hour is refused as another quantity",
        || async {
            hour_of(&stack.store, &cast.aws.1, h_post)
                .await
                .is_some_and(|h| h.state == UsageHourState::Mismatch)
        },
    )
    .await;

    // The vendor re-sends everything since a little before the backup, keys unchanged.
    let all: Vec<Value> = [old, pre, post]
        .into_iter()
        .flat_map(|e| e.as_array().unwrap().clone())
        .collect();
    let body = send(stack, Value::Array(all)).await;
    assert_eq!(
        (body["accepted"].as_u64(), body["duplicates"].as_u64()),
        (Some(2), Some(4)),
        "only the post-backup events are new to the restored database: {body}"
    );
    for hour in [h_pre, h_post] {
        wait_delivered(stack, &cast, hour).await;
    }
    let settled_ms = restarted.elapsed().as_millis();
    assert_eq!(
        ledger(stack, &cast, h_post).await,
        billed,
        "the marketplaces de-duplicated every resend"
    );
    settled_as_the_marketplace_billed(stack, &cast, &billed).await;
    reconciled(stack, &cast).await;
    eprintln!(
        "backup figures: {bytes} bytes in {backup_ms} ms; restored server to every hour \
         delivered in {settled_ms} ms; 6 events re-sent, 2 new, 4 duplicates; \
         ledger {} records before and after",
        billed.len()
    );
}

/// Usage billed before the backup (`old`), and usage in flight at it (`pre`): both
/// marketplaces turn the flusher away for now.
async fn before_the_backup(
    stack: &Stack,
    cast: &Cast,
    (old, h_old): (&Value, OffsetDateTime),
    (pre, h_pre): (&Value, OffsetDateTime),
) {
    send(stack, old.clone()).await;
    wait_delivered(stack, cast, h_old).await;
    stack
        .aws
        .start_outage("BatchMeterUsage", OutageKind::Unavailable, None);
    for path in AZURE_USAGE {
        stack
            .azure
            .start_outage(path, OutageKind::Unavailable, None);
    }
    send(stack, pre.clone()).await;
    for sub in [&cast.aws.1, &cast.azure] {
        eventually("the hour is tried and waits to be retried", || async {
            hour_of(&stack.store, sub, h_pre).await.is_some_and(|h| {
                h.state == UsageHourState::Sending && h.attempts >= 1 && h.lease_id.is_none()
            })
        })
        .await;
    }
}

/// What happens between the backup and the restore: the in-flight hour is billed, new usage
/// is billed, and two buyers cancel.
async fn after_the_backup(stack: &Stack, cast: &Cast, h_pre: OffsetDateTime, post: Value) {
    stack.aws.end_outages();
    stack.azure.end_outages();
    wait_delivered(stack, cast, h_pre).await;
    send(stack, post).await;
    wait_delivered(stack, cast, h_pre + Duration::hours(1)).await;
    stack
        .aws
        .send_subscription_event(
            &cast.aws_leaver.0.agreement_id,
            SubscriptionAction::UnsubscribeSuccess,
        )
        .await
        .unwrap();
    let carol = cast.azure_leaver.external.external_id.parse().unwrap();
    stack
        .azure
        .marketplace_action(carol, MarketplaceAction::Unsubscribe)
        .await
        .unwrap();
    eventually("Microsoft's cancellation is applied", || async {
        let now = stack.store.get_subscription(cast.azure_leaver.id).await;
        now.unwrap().status == SubscriptionStatus::Cancelled
    })
    .await;
    // AWS notifies over SNS's HTTPS subscription and its SQS queue: both copies are taken in
    // before the restore, so none is left on the queue to be read into the restored database.
    eventually("both copies of AWS's cancellation are taken in", || async {
        let timeline = stack
            .store
            .timeline(cast.aws_leaver.1.id, 50)
            .await
            .unwrap();
        let copies = timeline.iter().filter(|e| e.kind == "lifecycle:cancel");
        copies.count() == 2
    })
    .await;
}

/// The restored database, before a server runs on it: the hour that was in flight is still
/// unbilled as far as it knows, the later hour and the cancellations are gone.
async fn restored_state(url: &str, cast: &Cast, (h_old, h_pre, h_post): Hours) {
    let store = Store::connect(url, &StoreOptions::default()).await.unwrap();
    for sub in [&cast.aws.1, &cast.azure] {
        let state = |h: Option<UsageHour>| h.map(|h| h.state);
        assert_eq!(
            state(hour_of(&store, sub, h_old).await),
            Some(UsageHourState::Delivered)
        );
        assert_eq!(
            state(hour_of(&store, sub, h_pre).await),
            Some(UsageHourState::Sending),
            "in flight at the backup"
        );
        assert_eq!(state(hour_of(&store, sub, h_post).await), None);
    }
    for sub in [&cast.aws_leaver.1, &cast.azure_leaver] {
        let status = store.get_subscription(sub.id).await.unwrap().status;
        assert_eq!(
            status,
            SubscriptionStatus::Active,
            "cancelled after the backup"
        );
    }
    store.close().await;
}

type Hours = (OffsetDateTime, OffsetDateTime, OffsetDateTime);

/// Every hour of the usage buyers is delivered, none mismatched or dead, each with the record
/// id the marketplace billed first: AWS answered the resend with it, Microsoft with 409 and the
/// accepted event.
async fn settled_as_the_marketplace_billed(stack: &Stack, cast: &Cast, billed: &Billed) {
    for (who, sub) in [("aws", &cast.aws.1), ("azure", &cast.azure)] {
        let ours = hours_of(&stack.store, sub).await;
        for hour in ours
            .into_iter()
            .filter(|h| billed.iter().any(|b| b.1 == h.hour))
        {
            assert_eq!(hour.state, UsageHourState::Delivered, "{hour:?}");
            let first = billed
                .iter()
                .find(|(w, h, _, _)| w == who && *h == hour.hour)
                .unwrap_or_else(|| panic!("{who} {} not billed", hour.hour));
            assert_eq!(hour.quantity.to_string(), first.2, "{hour:?}");
            assert_eq!(
                hour.marketplace_record_id.as_ref(),
                Some(&first.3),
                "{hour:?}"
            );
        }
    }
    let azure_pre = hours_of(&stack.store, &cast.azure).await;
    assert!(
        azure_pre
            .iter()
            .filter(|h| h.outcome.as_deref() == Some("already_accepted"))
            .count()
            >= 2,
        "Microsoft answered the resent hours as duplicates: {azure_pre:#?}"
    );
}

/// Reconciliation after the restore: Microsoft's cancellation comes back (List Subscriptions
/// says Unsubscribed), and so does AWS's (SearchAgreements: the buyer's agreement is
/// CANCELLED; GetAgreementEntitlements: its licence DEPROVISIONED), recorded as reconcile's.
async fn reconciled(stack: &Stack, cast: &Cast) {
    let report = run::reconcile_once(&stack.config, false).await.unwrap();
    for leaver in [&cast.azure_leaver, &cast.aws_leaver.1] {
        let id = &leaver.external.external_id;
        let item = report.items.iter().find(|i| &i.external_id == id);
        assert!(
            item.is_some_and(|i| matches!(i.action, Action::Repaired(_))),
            "{report:#?}"
        );
    }
    let status = |id| async move { stack.store.get_subscription(id).await.unwrap().status };
    assert_eq!(
        status(cast.azure_leaver.id).await,
        SubscriptionStatus::Cancelled
    );
    assert_eq!(
        status(cast.aws_leaver.1.id).await,
        SubscriptionStatus::Cancelled,
        "the Agreement API tells reconciliation of the cancellation"
    );
    let timeline = stack
        .store
        .timeline(cast.aws_leaver.1.id, 50)
        .await
        .unwrap();
    assert!(
        timeline
            .iter()
            .any(|e| e.source == "reconcile" && e.kind == "lifecycle:cancel"),
        "{timeline:?}"
    );
}
