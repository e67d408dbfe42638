//! `marketlink demo` (the server with both marketplace sandboxes on a fresh SQLite database)
//! and `marketlink sandbox` (the sandboxes alone).

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use marketlink_core::{Clock, SystemClock};

use super::{serve::serve_until, signal::spawn_signal_watch, wiring::providers};
use crate::{config::Config, sandbox};

pub async fn demo(
    mut config: Config,
    data_dir: PathBuf,
    aws_bind: std::net::SocketAddr,
    azure_bind: std::net::SocketAddr,
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
        aws_bind,
        sandbox::aws_scenario(None)?,
        &vendor,
        clock.clone(),
        shutdown.clone(),
    )
    .await?;
    let azure =
        sandbox::start_azure(azure_bind, sandbox::azure_scenario(None)?, &vendor, clock).await?;
    config.azure = Some(sandbox::azure_provider_config(&azure, &public_url));
    let aws_url = aws.base_url.clone();
    let azure_buyer = azure.buyer_page_url();
    let azure_url = azure.base_url.clone();
    let providers = providers(&config, Arc::new(SystemClock)).await?;
    let result = serve_until(config, providers, shutdown.clone(), move |address| {
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
        println!("Press Ctrl-C to stop.");
    })
    .await;
    shutdown.cancel();
    let _ = aws.task.await;
    azure.shutdown().await;
    result
}

/// Arguments of `marketlink sandbox`.
pub struct SandboxArgs {
    pub aws_bind: std::net::SocketAddr,
    pub aws_scenario: Option<PathBuf>,
    pub azure_bind: std::net::SocketAddr,
    pub azure_scenario: Option<PathBuf>,
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
        clock,
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
    println!("Press Ctrl-C to stop.");
    shutdown.cancelled().await;
    let _ = aws.task.await;
    azure.shutdown().await;
    Ok(())
}
