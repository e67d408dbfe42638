//! Starting the built-in marketplace sandboxes, for `marketlink demo` and `marketlink sandbox`.

use std::{net::SocketAddr, path::Path, sync::Arc};

use anyhow::Context;
use marketlink_core::Clock;
use marketlink_sandbox::{
    aws::{AwsSandbox, AwsSandboxConfig},
    azure::{AzureSandbox, AzureSandboxConfig, AzureSandboxHandle},
    gcp::{GcpSandbox, GcpSandboxConfig},
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running AWS sandbox.
pub struct RunningAws {
    /// The emulator's state, for tests that drive it directly.
    pub sandbox: Arc<AwsSandbox>,
    pub base_url: String,
    pub task: JoinHandle<()>,
}

/// Where the sandboxes send buyers and notifications.
pub struct VendorUrls {
    pub aws_landing: String,
    pub aws_sns: Option<String>,
    pub azure_landing: String,
    pub azure_webhook: String,
    /// Where Google's buyer page POSTs `x-gcp-marketplace-token`: the landing route every
    /// provider gets (Producer Portal calls it the sign-up URL).
    pub gcp_signup: String,
}

impl VendorUrls {
    pub fn for_public_url(public_url: &str) -> Self {
        let base = public_url.trim_end_matches('/');
        Self {
            aws_landing: format!("{base}/aws/landing"),
            aws_sns: Some(format!("{base}/aws/sns")),
            azure_landing: format!("{base}/azure/landing"),
            azure_webhook: format!("{base}/azure/webhook"),
            gcp_signup: format!("{base}/gcp/landing"),
        }
    }
}

/// The AWS sandbox scenario from a TOML file, or the built-in one.
pub fn aws_scenario(scenario: Option<&Path>) -> anyhow::Result<AwsSandboxConfig> {
    load_scenario(scenario, "AWS", AwsSandboxConfig::from_toml_str)
}

/// Serves the AWS sandbox on `bind`, wired to the vendor's URLs.
pub async fn start_aws(
    bind: SocketAddr,
    mut config: AwsSandboxConfig,
    vendor: &VendorUrls,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningAws> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind} for the AWS sandbox"))?;
    let address = listener.local_addr()?;
    config.public_base_url = format!("http://{address}");
    config.landing_url = vendor.aws_landing.clone();
    config.sns_http_endpoint = vendor.aws_sns.clone();
    let sandbox = AwsSandbox::new(config, clock)?;
    let router = sandbox.router();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "AWS sandbox stopped");
        }
    });
    Ok(RunningAws {
        sandbox,
        base_url: format!("http://{address}"),
        task,
    })
}

/// The Microsoft marketplace sandbox scenario from a TOML file, or the built-in one.
pub fn azure_scenario(scenario: Option<&Path>) -> anyhow::Result<AzureSandboxConfig> {
    load_scenario(scenario, "Microsoft", AzureSandboxConfig::from_toml_str)
}

/// Starts the Microsoft marketplace sandbox (TLS with its own CA) on `bind`, wired to the
/// vendor's URLs.
pub async fn start_azure(
    bind: SocketAddr,
    mut config: AzureSandboxConfig,
    vendor: &VendorUrls,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<AzureSandboxHandle> {
    config.bind = bind;
    config.landing_url = vendor.azure_landing.clone();
    config.webhook_url = vendor.azure_webhook.clone();
    AzureSandbox::start(config, clock)
        .await
        .with_context(|| format!("cannot start the Microsoft marketplace sandbox on {bind}"))
}

/// The Azure provider's configuration for a running sandbox: its authority, API base, CA and
/// publisher app, and buyer sign-in coming back to `public_url`.
pub fn azure_provider_config(
    sandbox: &AzureSandboxHandle,
    public_url: &str,
) -> marketlink_azure::AzureConfig {
    let publisher = sandbox.config();
    let mut config = marketlink_azure::AzureConfig::new(
        publisher.publisher_tenant_id.clone(),
        publisher.publisher_app_id.clone(),
        publisher.publisher_app_secret.expose().to_owned(),
    );
    config.authority_host = sandbox.authority_host().to_owned();
    config.marketplace_api_base = sandbox.marketplace_api_base();
    config.extra_ca_pem = Some(sandbox.ca_pem.clone());
    // Two apps, as Microsoft recommends: the single-tenant publisher app above calls the APIs,
    // the sandbox's multi-tenant landing app signs buyers in.
    let mut sign_in = marketlink_azure::SignInConfig::new(format!(
        "{}/azure/signin/callback",
        public_url.trim_end_matches('/')
    ));
    if let Some(landing) = &publisher.landing_app {
        sign_in.client_id = Some(landing.client_id.clone());
        sign_in.client_secret = Some(landing.client_secret.clone());
    }
    sign_in.graph_base = sandbox.graph_base();
    config.sign_in = Some(sign_in);
    config
}

/// A running Google Cloud Marketplace sandbox.
pub struct RunningGcp {
    pub sandbox: GcpSandbox,
    pub base_url: String,
    pub task: JoinHandle<()>,
}

/// The Google sandbox scenario from a TOML file, or the built-in one.
pub fn gcp_scenario(scenario: Option<&Path>) -> anyhow::Result<GcpSandboxConfig> {
    load_scenario(scenario, "Google", GcpSandboxConfig::from_toml_str)
}

/// Serves the Google sandbox on `bind` (plain HTTP), its buyer page sending buyers to the
/// vendor's sign-up URL. Pub/Sub stays a pull subscription unless the scenario names a push
/// endpoint.
pub async fn start_gcp(
    bind: SocketAddr,
    mut config: GcpSandboxConfig,
    vendor: &VendorUrls,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningGcp> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind} for the Google sandbox"))?;
    let base_url = format!("http://{}", listener.local_addr()?);
    config.public_base_url = base_url.clone();
    if config.signup_url.is_none() {
        config.signup_url = Some(vendor.gcp_signup.clone());
    }
    let sandbox = GcpSandbox::new(config, clock)?;
    let router = sandbox.router();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "Google sandbox stopped");
        }
    });
    Ok(RunningGcp {
        sandbox,
        base_url,
        task,
    })
}

/// The Google provider's configuration for a running sandbox: its service account's key file
/// (written to `key_file`), base URLs, ids, and the keys that sign its sign-up JWTs and push
/// tokens. Pulls from the sandbox's subscription unless the scenario pushes, since a Pub/Sub
/// subscription is one or the other; push tokens are accepted either way.
pub fn gcp_provider_config(
    gcp: &RunningGcp,
    key_file: &Path,
    public_url: &str,
) -> anyhow::Result<marketlink_gcp::GcpConfig> {
    std::fs::write(key_file, gcp.sandbox.service_account_key_json()?)
        .with_context(|| format!("cannot write {}", key_file.display()))?;
    let scenario = gcp.sandbox.config();
    let base = &gcp.base_url;
    let audience = scenario
        .push_audience()
        .unwrap_or_else(|| format!("{}/gcp/pubsub", public_url.trim_end_matches('/')));
    Ok(marketlink_gcp::GcpConfig {
        provider_id: scenario.provider_id.clone(),
        service_name: scenario.product_domain.clone(),
        signup_keys_url: format!(
            "{base}/robot/v1/metadata/x509/cloud-commerce-partner@system.gserviceaccount.com"
        ),
        oidc_keys_url: format!("{base}/oauth2/v3/certs"),
        procurement_url: base.clone(),
        pubsub_url: base.clone(),
        service_control_url: base.clone(),
        credentials_file: Some(key_file.to_owned()),
        push: Some(marketlink_gcp::PushConfig {
            audience,
            service_account_email: scenario.push_service_account_email.clone(),
            issuer: Some(base.clone()),
        }),
        subscription: scenario
            .push_endpoint
            .is_none()
            .then(|| scenario.subscription_name()),
        ..marketlink_gcp::GcpConfig::default()
    })
}

/// The demo's Google scenario: the built-in one, its product's service declaring the demo
/// catalog's metered dimension too (Google takes only the metrics a service declares).
pub fn gcp_demo_scenario() -> GcpSandboxConfig {
    let mut scenario = GcpSandboxConfig::default();
    scenario
        .metrics
        .push(format!("{}/api_calls", scenario.product_domain));
    scenario
}

/// A sandbox scenario from a TOML file, or the built-in one; `who` names the marketplace in
/// the errors.
fn load_scenario<T: Default>(
    scenario: Option<&Path>,
    who: &str,
    parse: fn(&str) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let Some(path) = scenario else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {who} sandbox scenario {}", path.display()))?;
    parse(&text).with_context(|| format!("invalid {who} sandbox scenario {}", path.display()))
}
