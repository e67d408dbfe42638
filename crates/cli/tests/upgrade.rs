//! Rolling upgrades (docs/operations.md, "Upgrades"): the previous release keeps serving
//! while this build migrates the database, and restarts on the new schema, as an old replica
//! does during a rolling upgrade.
//!
//! The tests with the previous release's binary are ignored by default: `scripts/upgrade-check`
//! builds that release and runs them with its path in `MARKETLINK_TEST_UPGRADE_OLD_BIN`.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{BIN, Server, free_port, marketlink_at, terminate};
use marketlink_core::{
    Clock, ExternalRef, Marketplace, SubscriptionId, SubscriptionStatus, SystemClock,
};
use marketlink_sandbox::aws::{OfferKind, SubscriptionAction};
use marketlink_store::{Store, StoreOptions};
use reqwest::StatusCode;
use time::format_description::well_known::Rfc3339;

const OLD_BIN: &str = "MARKETLINK_TEST_UPGRADE_OLD_BIN";
/// `0` when the previous release predates the fix that lets a build start over a database
/// with migrations newer than it knows (scripts/upgrade-check reads its source).
const OLD_SERVES_NEWER: &str = "MARKETLINK_TEST_UPGRADE_OLD_SERVES_NEWER";
const KEY: &str = "upgrade-usage-key-0123";
const PRODUCT: &str = "mlsandboxclassic0000000001";

/// The previous release's binary; a run of the ignored tests without it fails.
fn old_binary() -> PathBuf {
    let path = std::env::var_os(OLD_BIN).unwrap_or_else(|| {
        panic!("{OLD_BIN} is not set: run scripts/upgrade-check, which builds the previous release")
    });
    let path = PathBuf::from(path);
    assert!(path.is_file(), "{OLD_BIN}={} is not a file", path.display());
    assert_ne!(
        std::fs::read(&path).unwrap(),
        std::fs::read(BIN).unwrap(),
        "the old binary is this build's"
    );
    path
}

/// A vendor selling one product through the AWS sandbox at `sandbox`: keys every release
/// since the first one knows.
fn config(database: &str, port: u16, sandbox: &str) -> String {
    let host = sandbox.trim_start_matches("http://");
    format!(
        r#"
[database]
url = "{database}"

[server]
bind = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"

[[catalog.products]]
id = "analytics"
name = "Contoso Analytics"
[[catalog.products.listings]]
marketplace = "aws"
product_code = "{PRODUCT}"
[[catalog.products.plans]]
id = "pro"
features = ["dashboards"]
[[catalog.products.plans.dimensions]]
id = "api_calls"
kind = "metered"

[metering]
api_keys = ["{KEY}"]
flush_interval_secs = 2

[aws]
endpoint_url = "{sandbox}"
sns_allow_http = true
sns_cert_hosts = ["{host}"]
sqs_queue_urls = ["{sandbox}/111122223333/aws-mp-sns-notifications"]
sqs_wait_time_secs = 1
seller_account_id = "111122223333"

[aws.credentials]
access_key_id = "AKIASANDBOX"
secret_access_key = "sandbox-secret"

[[aws.products]]
product_code = "{PRODUCT}"
notification_mode = "sns"
identity_mode = "classic"
subscription_topic_arn = "arn:aws:sns:us-east-1:111122223333:aws-mp-subscription-notification-{PRODUCT}"
"#
    )
}

/// One deployment: a directory with its configuration, the AWS sandbox it sells through.
struct Site {
    dir: tempfile::TempDir,
    url: String,
    database: String,
    aws: std::sync::Arc<marketlink_sandbox::aws::AwsSandbox>,
    _stop: tokio_util::sync::DropGuard,
}

impl Site {
    async fn new(database: String) -> Self {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut vendor = marketlink_cli::sandbox::VendorUrls::for_public_url(&url);
        // Notifications come over the SQS queue only; tests send each one explicitly.
        vendor.aws_sns = None;
        let scenario = marketlink_sandbox::aws::AwsSandboxConfig {
            subscribe_delay_ms: 3_600_000,
            ..Default::default()
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let aws = marketlink_cli::sandbox::start_aws(
            "127.0.0.1:0".parse().unwrap(),
            scenario,
            &vendor,
            std::sync::Arc::new(SystemClock),
            stop.clone(),
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let database = database.replace("{dir}", &dir.path().display().to_string());
        let toml = config(&database, port, &aws.base_url);
        std::fs::write(dir.path().join("marketlink.toml"), toml).unwrap();
        Self {
            dir,
            url,
            database,
            aws: aws.sandbox,
            _stop: stop.drop_guard(),
        }
    }

    fn command(&self, bin: &Path, args: &[&str]) -> Command {
        let mut command = marketlink_at(bin, self.dir.path());
        command
            .env_remove(OLD_BIN)
            .env_remove(OLD_SERVES_NEWER)
            .args(["--config", "marketlink.toml"])
            .args(args);
        command
    }

    /// Runs a command to its end; its stdout, or a panic with its output.
    fn run(&self, bin: &Path, args: &[&str]) -> String {
        let out = self.command(bin, args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{} {args:?}: {}\n{stdout}\n{}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Starts `serve`: the server once `/readyz` answers 200, or its exit status and log
    /// when it stops first.
    async fn serve(&self, bin: &Path, env: &[(&str, &str)]) -> Result<Server, String> {
        let log = self.dir.path().join(format!("serve-{}.log", free_port()));
        let mut command = self.command(bin, &["serve"]);
        command
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut server = Server(command.spawn().unwrap());
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = server.0.try_wait().unwrap() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("exited {status}: {log}"));
            }
            let ready = client.get(format!("{}/readyz", self.url)).send().await;
            if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
                return Ok(server);
            }
            assert!(Instant::now() < deadline, "serve did not become ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn ready(&self) -> StatusCode {
        let answer = reqwest::get(format!("{}/readyz", self.url)).await.unwrap();
        answer.status()
    }
}

/// Polls `check` for up to 60 s (a loaded 2-core CI machine).
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A buyer purchases on AWS and signs up through the serving release; `subscribe-success`
/// reaches it over SQS and is applied. The subscription's id.
async fn buyer_subscribes(site: &Site, store: &Store) -> (SubscriptionId, String) {
    let purchase = site
        .aws
        .purchase(PRODUCT, OfferKind::Subscription, "444455556666")
        .unwrap();
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let token = [(
        "x-amzn-marketplace-token",
        purchase.registration_token.as_str(),
    )];
    let landing = format!("{}/aws/landing", site.url);
    let landed = browser.post(landing).form(&token).send().await.unwrap();
    assert!(landed.status().is_redirection(), "{}", landed.status());
    let signup = format!("{}/signup", site.url);
    let html = browser
        .get(&signup)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = "name=\"csrf\" value=\"";
    let at = html.find(marker).expect("sign-up form") + marker.len();
    let csrf = html[at..].split('"').next().unwrap();
    let form = [
        ("csrf", csrf),
        ("name", "Customer"),
        ("company", "Customer Inc"),
        ("email", "buyer@acme.example"),
        ("password", "correct-horse-battery"),
    ];
    let signed_up = browser.post(&signup).form(&form).send().await.unwrap();
    assert_eq!(signed_up.status(), StatusCode::SEE_OTHER, "sign-up");
    let external = ExternalRef::aws_classic_id(&purchase.customer_identifier, PRODUCT);
    let sub = store
        .find_subscription(&Marketplace::AWS, &external)
        .await
        .unwrap()
        .expect("the sign-up stored the subscription");
    site.aws
        .send_subscription_event(&purchase.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .unwrap();
    eventually("subscribe-success is applied", || async {
        store.get_subscription(sub.id).await.unwrap().status == SubscriptionStatus::Active
    })
    .await;
    (sub.id, purchase.customer_identifier)
}

/// Usage `hours_back` hours ago, accepted by the usage API and billed to AWS by the flush.
async fn usage_is_billed(site: &Site, sub: SubscriptionId, customer: &str, hours_back: i64) {
    let hour = marketlink_engine::metering::hour_floor(SystemClock.now())
        - time::Duration::hours(hours_back);
    let at = (hour + time::Duration::minutes(5))
        .format(&Rfc3339)
        .unwrap();
    let quantity = 7 + hours_back;
    let event = serde_json::json!({"subscription_id": sub.to_string(), "dimension": "api_calls",
        "quantity": quantity, "timestamp": at, "idempotency_key": format!("upgrade-{hours_back}")});
    let answer = reqwest::Client::new()
        .post(format!("{}/api/v1/usage", site.url))
        .bearer_auth(KEY)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::ACCEPTED, "usage accepted");
    eventually("the hour is billed to AWS", || async {
        site.aws.metered_records().iter().any(|r| {
            r.customer_identifier.as_deref() == Some(customer)
                && r.hour == hour
                && r.quantity == quantity.to_string()
        })
    })
    .await;
}

/// What the new build's dry run says of the migrations between the releases: whether the
/// previous release may keep serving while they apply.
fn online_safe(dry_run: &str) -> bool {
    dry_run.contains("database is up to date") || dry_run.contains("all online-safe")
}

/// The rolling upgrade on `database` (`{dir}` stands for the test's directory).
async fn rolling_upgrade(backend: &str, old: PathBuf, database: String) {
    let new = Path::new(BIN);
    let site = Site::new(database).await;
    println!("[{backend}] old: {}\n[{backend}] new: {BIN}", old.display());

    let migrated = site.run(&old, &["migrate"]);
    assert!(migrated.contains("applied"), "{migrated}");
    let mut server = site.serve(&old, &[]).await.expect("the old release serves");
    println!("[{backend}] ok: the old release migrated an empty database and serves");

    let dry_run = site.run(new, &["migrate", "--dry-run"]);
    print!("[{backend}] new build, migrate --dry-run:\n{dry_run}");
    if !online_safe(&dry_run) {
        // Not for a rolling upgrade (docs/operations.md): the old release stops first.
        terminate(&mut server).await;
        site.run(new, &["migrate"]);
        site.serve(new, &[]).await.expect("the new build serves");
        println!(
            "[{backend}] checked: the migrations are NOT online-safe, so the old release was \
             stopped first; the new build migrated and serves"
        );
        return;
    }
    let applied = site.run(new, &["migrate"]);
    print!("[{backend}] new build, migrate (the old release serving):\n{applied}");
    assert_eq!(
        site.ready().await,
        StatusCode::OK,
        "/readyz of the old release"
    );
    println!("[{backend}] ok: the old release answers /readyz 200 on the new schema");

    let store = Store::connect(&site.database, &StoreOptions::default())
        .await
        .unwrap();
    let (sub, customer) = buyer_subscribes(&site, &store).await;
    println!(
        "[{backend}] ok: through the old release, a buyer landed and signed up, and \
         subscribe-success (SQS) was applied: the subscription is active"
    );
    usage_is_billed(&site, sub, &customer, 2).await;
    println!("[{backend}] ok: usage accepted by the old release's API and billed by its flush");

    let stopped = terminate(&mut server).await;
    assert!(
        stopped.success(),
        "the old release stops cleanly: {stopped}"
    );
    let newer_schema = applied.contains("applied");
    let server = old_restarts(&site, &old, backend, newer_schema).await;
    assert_eq!(site.ready().await, StatusCode::OK);
    usage_is_billed(&site, sub, &customer, 3).await;
    println!("[{backend}] ok: the restarted old release accepts and bills usage");
    drop(server);
    store.close().await;
}

/// The old release restarts on the new schema, as an old replica does mid-upgrade. A
/// release from before the fix (`MARKETLINK_TEST_UPGRADE_OLD_SERVES_NEWER=0`) refuses to migrate
/// over a schema newer than it knows: the test expects that refusal, then the start without
/// migrating.
async fn old_restarts(site: &Site, old: &Path, backend: &str, newer_schema: bool) -> Server {
    if !newer_schema || std::env::var(OLD_SERVES_NEWER).as_deref() != Ok("0") {
        let server = site.serve(old, &[]).await;
        let server = server.expect("the old release restarts on the new schema");
        println!("[{backend}] ok: the old release restarted on the new schema (migrate on start)");
        return server;
    }
    let refused = site.serve(old, &[]).await;
    let Err(log) = refused else {
        panic!(
            "the old release restarted on the new schema although {OLD_SERVES_NEWER}=0 \
             says it predates the fix: is scripts/upgrade-check's check of its source stale?"
        );
    };
    assert!(
        log.contains("previously applied but is missing"),
        "the old release refused to restart for another reason: {log}"
    );
    println!(
        "[{backend}] FINDING: the old release predates the fix and refuses to restart over the \
         newer migration (sqlx: \"previously applied but is missing\"); releases from this \
         one on start over a newer schema"
    );
    let env = [("MARKETLINK_DATABASE__MIGRATE_ON_START", "false")];
    let server = site.serve(old, &env).await;
    let server = server.expect("the old release starts when it does not migrate");
    println!("[{backend}] ok: the old release restarted with database.migrate_on_start = false");
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the previous release's binary: scripts/upgrade-check"]
async fn previous_release_serves_through_the_upgrade_on_sqlite() {
    let old = old_binary();
    rolling_upgrade("sqlite", old, "sqlite:{dir}/marketlink.db".to_owned()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the previous release's binary: scripts/upgrade-check"]
async fn previous_release_serves_through_the_upgrade_on_postgres() {
    let old = old_binary();
    let database = fresh_postgres_database().await;
    rolling_upgrade("postgres", old, database.clone()).await;
    drop_postgres_database(&database).await;
}

/// The PostgreSQL test server (`MARKETLINK_TEST_POSTGRES_URL`); never skipped here: the
/// upgrade check runs where PostgreSQL does (CI).
fn postgres_admin_url() -> String {
    std::env::var("MARKETLINK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn fresh_postgres_database() -> String {
    use sqlx::{Connection, Executor};
    let admin = postgres_admin_url();
    let name = format!("marketlink_upgrade_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("PostgreSQL test server (MARKETLINK_TEST_POSTGRES_URL)");
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    format!("{base}/{name}")
}

async fn drop_postgres_database(url: &str) {
    use sqlx::{Connection, Executor};
    let name = url.rsplit_once('/').map_or(url, |(_, name)| name);
    let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .unwrap();
    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    conn.execute(drop.as_str()).await.unwrap();
}

/// This build over a database a newer release migrated: `serve` starts (it used to refuse),
/// `migrate --dry-run` and `doctor` say the database is ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_build_serves_on_a_database_a_newer_release_migrated() {
    use sqlx::{Connection, Executor};
    let site = Site::new("sqlite:{dir}/marketlink.db".to_owned()).await;
    let new = Path::new(BIN);
    site.run(new, &["migrate"]);
    let mut raw = sqlx::SqliteConnection::connect(&site.database)
        .await
        .unwrap();
    raw.execute(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (29991231000000, 'from a newer release', TRUE, X'00', 0)",
    )
    .await
    .unwrap();
    raw.close().await.unwrap();

    let dry_run = site.run(new, &["migrate", "--dry-run"]);
    assert!(
        dry_run.contains("ahead of this build")
            && dry_run.contains("29991231000000_from a newer release")
            && dry_run.contains("database is up to date"),
        "{dry_run}"
    );
    let doctor = site.command(new, &["doctor"]).output().unwrap();
    let doctor = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        doctor.contains("warn  database.migrations")
            && doctor.contains("29991231000000_from a newer release"),
        "{doctor}"
    );
    let mut server = site
        .serve(new, &[])
        .await
        .expect("serves on a newer schema");
    assert!(terminate(&mut server).await.success());
}
