//! The soak's world: both marketplace sandboxes in this (the test's) process, and marketlink
//! as its own processes behind a balancer, configured by file as an operator would.

use std::sync::Arc;

use marketlink_cli::{config::demo_base, sandbox};
use marketlink_core::SystemClock;
use marketlink_sandbox::{
    aws::{AwsSandbox, AwsSandboxConfig},
    azure::{AzureSandboxConfig, AzureSandboxHandle},
};
use marketlink_store::{Store, StoreOptions};
use tokio_util::sync::CancellationToken;

use crate::fleet::{Balancer, Fleet};

/// The usage API key of the demo configuration the soak runs on.
pub const USAGE_KEY: &str = "demo-usage-key-0123";

pub struct SoakStack {
    pub aws: Arc<AwsSandbox>,
    pub azure: AzureSandboxHandle,
    pub fleet: Fleet,
    /// The one address of the deployment (buyers, the product, the marketplaces).
    pub url: String,
    /// A handle on marketlink's database, to read what it acknowledged.
    pub store: Store,
    _balancer: Balancer,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for SoakStack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Microsoft test users the soak's buyers sign in as (one tenant each).
pub fn azure_buyer(n: usize) -> String {
    format!("50a50a50-0000-4000-8000-{n:012}")
}

fn azure_scenario(buyers: usize) -> AzureSandboxConfig {
    let mut scenario = AzureSandboxConfig::default();
    let template = scenario.users[0].clone();
    for n in 0..buyers {
        let mut user = template.clone();
        user.object_id = azure_buyer(n);
        user.tenant_id = format!("7e7e7e7e-0000-4000-8000-{n:012}");
        user.mail = Some(format!("azure{n}@soak.example"));
        user.user_principal_name = Some(format!("azure{n}@soak.onmicrosoft.example"));
        user.display_name = format!("Soak buyer {n}");
        scenario.users.push(user);
    }
    scenario
}

/// What every replica shares beyond the demo configuration: short leases and intervals so a
/// killed replica's claims are taken over within the run, room for one machine's traffic.
fn extra_config(azure: &marketlink_azure::AzureConfig) -> String {
    #[derive(serde::Serialize)]
    struct Azure<'a> {
        azure: &'a marketlink_azure::AzureConfig,
    }
    let roomy = "{ per_minute = 600000, burst = 100000 }";
    let mut text = format!(
        "\n[reconcile]\ninterval_secs = 5\nstuck_after_secs = 30\n\n[rate_limits]\n\
         sign_in = {roomy}\nsign_up = {roomy}\nlanding = {roomy}\nnotifications = {roomy}\n\
         api = {roomy}\n\n"
    );
    text.push_str(&toml::to_string(&Azure { azure }).expect("Azure configuration as TOML"));
    text
}

/// Sandboxes, `replicas` marketlink processes (not started) on `database_url` (a fresh SQLite
/// file when `None`), and the balancer in front of them.
pub async fn start(
    database_url: Option<String>,
    replicas: usize,
    azure_buyers: usize,
) -> SoakStack {
    let dir = tempfile::tempdir().expect("temp dir");
    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind balancer");
    let url = format!(
        "http://{}",
        listener.local_addr().expect("balancer address")
    );
    let vendor = sandbox::VendorUrls::for_public_url(&url);
    let scenario = AwsSandboxConfig {
        // The soak sends each lifecycle event itself.
        subscribe_delay_ms: 3_600_000,
        ..AwsSandboxConfig::default()
    };
    let any_port = "127.0.0.1:0".parse().expect("address");
    let aws = sandbox::start_aws(
        any_port,
        scenario,
        &vendor,
        Arc::new(SystemClock),
        shutdown.clone(),
    )
    .await
    .expect("AWS sandbox");
    let azure = sandbox::start_azure(
        any_port,
        azure_scenario(azure_buyers),
        &vendor,
        Arc::new(SystemClock),
    )
    .await
    .expect("Microsoft sandbox");
    let aws_addr = aws
        .base_url
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let database_url =
        database_url.unwrap_or_else(|| format!("sqlite:{}", dir.path().join("soak.db").display()));
    let mut config = demo_base(aws_addr);
    let mut azure_config = sandbox::azure_provider_config(&azure, &url);
    azure_config.http_timeout_secs = 3;
    config.push_str(&extra_config(&azure_config));
    let env = vec![
        ("MARKETLINK_SERVER__PUBLIC_URL".into(), url.clone()),
        ("MARKETLINK_SERVER__SESSION_SECRET".into(), "s".repeat(64)),
        ("MARKETLINK_DATABASE__URL".into(), database_url.clone()),
        (
            "MARKETLINK_DATABASE__MIGRATE_ON_START".into(),
            "true".into(),
        ),
        (
            "MARKETLINK_METERING__FLUSH_INTERVAL_SECS".into(),
            "1".into(),
        ),
        ("MARKETLINK_METERING__LEASE_SECS".into(), "30".into()),
        // Hours stay open for usage until the soak's second half (see `soak`).
        ("MARKETLINK_METERING__SETTLE_SECS".into(), "21600".into()),
        // Late answers (the sandboxes' `LateAnswer`) outlast these.
        ("MARKETLINK_AWS__API_TIMEOUT_SECS".into(), "2".into()),
    ];
    let fleet = Fleet::new(dir.path(), replicas, &config, env);
    let balancer = Balancer::start(listener, fleet.ports());
    for index in 0..replicas {
        fleet.start(index).await;
    }
    let store = Store::connect(&database_url, &StoreOptions::default())
        .await
        .expect("store");
    SoakStack {
        aws: aws.sandbox,
        azure,
        fleet,
        url,
        store,
        _balancer: balancer,
        shutdown,
        _dir: dir,
    }
}
