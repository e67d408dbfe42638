//! Building the marketplace providers and the engine from the configuration.

use std::sync::Arc;

use marketlink_core::{Clock, SystemClock};
use marketlink_engine::{Engine, Providers};
use marketlink_store::Store;

use super::database::{ensure_migrated, open_store};
use crate::config::Config;

/// The marketplace providers the configuration asks for. Discovers the buyer sign-in
/// authority where one is configured (a network call).
pub async fn providers(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Providers> {
    let mut providers = Providers::new();
    if let Some(aws) = &config.aws {
        let provider = marketlink_aws::AwsProvider::new(aws.clone(), clock.clone())
            .map_err(|e| anyhow::anyhow!("invalid [aws] configuration: {e}"))?;
        providers = providers.with(Arc::new(provider));
    }
    if let Some(azure) = &config.azure {
        providers = providers.with(Arc::new(
            azure_provider(config, azure, clock.clone()).await?,
        ));
    }
    if let Some(gcp) = &config.gcp {
        let provider = marketlink_gcp::GcpProvider::new(gcp.clone(), clock.clone())
            .map_err(|e| anyhow::anyhow!("invalid [gcp] configuration: {e}"))?;
        providers = providers.with(Arc::new(provider));
    }
    if providers.is_empty() {
        tracing::warn!("no marketplace is configured: add an [aws], [azure] or [gcp] section");
    }
    Ok(providers)
}

async fn azure_provider(
    config: &Config,
    azure: &marketlink_azure::AzureConfig,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<marketlink_azure::AzureProvider> {
    let provider = marketlink_azure::AzureProvider::new(azure.clone(), clock.clone())
        .map_err(|e| anyhow::anyhow!("invalid [azure] configuration: {e}"))?;
    let Some(sign_in) = &azure.sign_in else {
        return Ok(provider);
    };
    let mut sign_in = sign_in.clone();
    sign_in.redirect_uri.get_or_insert_with(|| {
        format!(
            "{}/azure/signin/callback",
            config.server.public_url.trim_end_matches('/')
        )
    });
    let entra = marketlink_azure::EntraSignIn::discover(&provider, &sign_in, clock)
        .await
        .map_err(|e| anyhow::anyhow!("cannot set up buyer sign-in ([azure.sign_in]): {e}"))?;
    Ok(provider.with_buyer_sign_in(Arc::new(entra)))
}

/// The engine over `store` and `providers`, with the configured catalog and policies, and the
/// mailer when `[email]` is set.
pub(super) fn engine(
    config: &Config,
    store: Store,
    providers: Providers,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Engine> {
    let mailer = config
        .email
        .as_ref()
        .map(|email| {
            marketlink_engine::mail::Mailer::new(
                email,
                &config.server.public_url,
                &config.branding.name,
            )
        })
        .transpose()
        .map_err(|e| anyhow::anyhow!("invalid [email] configuration: {e}"))?;
    Ok(Engine::new(
        store,
        providers,
        clock,
        Arc::new(config.catalog.clone()),
        config.changes.clone(),
    )
    .with_metering(config.metering.settings())
    .with_webhooks(config.webhooks.clone())
    .with_mailer(mailer))
}

/// The engine for a one-off command (no workers, no server).
pub(super) async fn command_engine(config: &Config) -> anyhow::Result<Engine> {
    let store = open_store(config).await?;
    ensure_migrated(&store).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let providers = providers(config, clock.clone()).await?;
    engine(config, store, providers, clock)
}
