//! `marketlink demo` (the server with the three marketplace sandboxes on a fresh SQLite database)
//! and `marketlink sandbox` (the sandboxes alone).

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use marketlink_core::{Clock, SystemClock};

use super::{serve::serve_until, signal::spawn_signal_watch, wiring::providers};
use crate::{config::Config, sandbox};

/// Where `marketlink demo` serves its three sandboxes.
pub struct DemoSandboxes {
    pub aws: std::net::SocketAddr,
    pub azure: std::net::SocketAddr,
    pub gcp: std::net::SocketAddr,
}

pub async fn demo(
    mut config: Config,
    data_dir: PathBuf,
    binds: DemoSandboxes,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    config.database.url = format!("sqlite:{}", data_dir.join("demo.db").display());
    config.database.migrate_on_start = true;
    let public_url = config.server.public_url.trim_end_matches('/').to_owned();
    let shutdown = spawn_signal_watch();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let vendor = sandbox::VendorUrls::for_public_url(&public_url);
    let aws = sandbox::start_aws(
        binds.aws,
        sandbox::aws_scenario(None)?,
        &vendor,
        clock.clone(),
        shutdown.clone(),
    )
    .await?;
    let azure = sandbox::start_azure(
        binds.azure,
        sandbox::azure_scenario(None)?,
        &vendor,
        clock.clone(),
    )
    .await?;
    config.azure = Some(sandbox::azure_provider_config(&azure, &public_url));
    let gcp = sandbox::start_gcp(
        binds.gcp,
        sandbox::gcp_demo_scenario(),
        &vendor,
        clock,
        shutdown.clone(),
    )
    .await?;
    let key_file = data_dir.join("gcp-service-account.json");
    config.gcp = Some(sandbox::gcp_provider_config(&gcp, &key_file, &public_url)?);
    let urls = DemoUrls {
        data_dir,
        public_url,
        aws: aws.base_url.clone(),
        azure: azure.base_url.clone(),
        azure_buyer: azure.buyer_page_url(),
        gcp: gcp.base_url.clone(),
    };
    let providers = providers(&config, Arc::new(SystemClock)).await?;
    let result = serve_until(config, providers, shutdown.clone(), move |address| {
        urls.print(address);
    })
    .await;
    shutdown.cancel();
    let _ = aws.task.await;
    let _ = gcp.task.await;
    azure.shutdown().await;
    result
}

/// What the demo prints once it listens.
struct DemoUrls {
    data_dir: PathBuf,
    public_url: String,
    aws: String,
    azure: String,
    azure_buyer: String,
    gcp: String,
}

impl DemoUrls {
    fn print(&self, address: std::net::SocketAddr) {
        let Self {
            data_dir,
            public_url,
            aws: aws_url,
            azure: azure_url,
            azure_buyer,
            gcp: gcp_url,
        } = self;
        println!();
        println!(
            "marketlink demo is running (database: {}/demo.db)",
            data_dir.display()
        );
        println!("  service:        {public_url}  (listening on {address})");
        println!("  health:         {public_url}/healthz   readiness: {public_url}/readyz");
        println!("  AWS sandbox:    {aws_url}");
        println!("    buy as an AWS buyer:   {aws_url}/aws/buyer");
        println!("    agreements & actions:  {aws_url}/aws/buyer/agreements");
        println!("    every API call:        {aws_url}/aws/calls");
        println!("    faults on demand:      {aws_url}/aws/faults");
        println!(
            "  Microsoft sandbox: {azure_url}  (TLS with its own CA: {azure_url}/sandbox/ca.pem)"
        );
        println!("    buy as an Azure buyer: {azure_buyer}");
        println!("    faults on demand:      {azure_url}/sandbox/faults");
        println!("  Google sandbox: {gcp_url}");
        println!("    buy as a Google buyer: {gcp_url}/sandbox/gcp/buyer");
        println!("    faults on demand:      {gcp_url}/sandbox/gcp/faults");
        println!("Press Ctrl-C to stop.");
    }
}

/// Arguments of `marketlink sandbox`.
pub struct SandboxArgs {
    pub aws_bind: std::net::SocketAddr,
    pub aws_scenario: Option<PathBuf>,
    pub azure_bind: std::net::SocketAddr,
    pub azure_scenario: Option<PathBuf>,
    pub gcp_bind: std::net::SocketAddr,
    pub gcp_scenario: Option<PathBuf>,
    /// Where to write the Google sandbox's service account key file.
    pub gcp_key_file: Option<PathBuf>,
    pub vendor_url: String,
}

pub async fn sandbox(args: SandboxArgs) -> anyhow::Result<()> {
    let shutdown = spawn_signal_watch();
    let vendor = sandbox::VendorUrls::for_public_url(&args.vendor_url);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let aws = sandbox::start_aws(
        args.aws_bind,
        sandbox::aws_scenario(args.aws_scenario.as_deref())?,
        &vendor,
        clock.clone(),
        shutdown.clone(),
    )
    .await?;
    let azure = sandbox::start_azure(
        args.azure_bind,
        sandbox::azure_scenario(args.azure_scenario.as_deref())?,
        &vendor,
        clock.clone(),
    )
    .await?;
    let gcp = sandbox::start_gcp(
        args.gcp_bind,
        sandbox::gcp_scenario(args.gcp_scenario.as_deref())?,
        &vendor,
        clock,
        shutdown.clone(),
    )
    .await?;
    println!("AWS Marketplace sandbox on {}", aws.base_url);
    println!("  buyer page:  {}/aws/buyer", aws.base_url);
    println!("  call log:    {}/aws/calls", aws.base_url);
    println!("  faults:      {}/aws/faults", aws.base_url);
    println!("  credentials: access key AKIASANDBOX, secret sandbox-secret, region us-east-1");
    println!("Microsoft marketplace sandbox on {}", azure.base_url);
    println!("  buyer page:  {}", azure.buyer_page_url());
    println!("  faults:      {}/sandbox/faults", azure.base_url);
    println!(
        "  CA certificate to trust: {}/sandbox/ca.pem",
        azure.base_url
    );
    print_gcp(&gcp, args.gcp_key_file.as_deref())?;
    println!("Press Ctrl-C to stop.");
    shutdown.cancelled().await;
    let _ = aws.task.await;
    let _ = gcp.task.await;
    azure.shutdown().await;
    Ok(())
}

fn print_gcp(gcp: &sandbox::RunningGcp, key_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let config = gcp.sandbox.config();
    println!("Google Cloud Marketplace sandbox on {}", gcp.base_url);
    println!("  buyer page:  {}/sandbox/gcp/buyer", gcp.base_url);
    println!(
        "  provider:    {} (product {})",
        config.provider_id, config.product_domain
    );
    println!("  Pub/Sub:     {}", config.subscription_name());
    match key_file {
        Some(path) => {
            std::fs::write(path, gcp.sandbox.service_account_key_json()?)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("  service account key file: {}", path.display());
        }
        None => println!(
            "  service account: {} (--gcp-key-file writes its key file)",
            config.service_account_email
        ),
    }
    Ok(())
}
