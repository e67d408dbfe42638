//! Starting the built-in marketplace sandboxes, for `marketlink demo` and `marketlink sandbox`.

use std::{net::SocketAddr, path::Path, sync::Arc};

use anyhow::Context;
use marketlink_core::Clock;
use marketlink_sandbox::aws::{AwsSandbox, AwsSandboxConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running AWS sandbox.
pub struct RunningAws {
    pub base_url: String,
    pub task: JoinHandle<()>,
}

/// Where the sandbox sends buyers and notifications.
pub struct VendorUrls {
    pub aws_landing: String,
    pub aws_sns: Option<String>,
}

impl VendorUrls {
    pub fn for_public_url(public_url: &str) -> Self {
        let base = public_url.trim_end_matches('/');
        Self {
            aws_landing: format!("{base}/aws/landing"),
            aws_sns: Some(format!("{base}/aws/sns")),
        }
    }
}

pub async fn start_aws(
    bind: SocketAddr,
    scenario: Option<&Path>,
    vendor: &VendorUrls,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningAws> {
    let mut config = match scenario {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read AWS sandbox scenario {}", path.display()))?;
            AwsSandboxConfig::from_toml_str(&text)
                .with_context(|| format!("invalid AWS sandbox scenario {}", path.display()))?
        }
        None => AwsSandboxConfig::default(),
    };
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind} for the AWS sandbox"))?;
    let address = listener.local_addr()?;
    config.public_base_url = format!("http://{address}");
    config.landing_url = vendor.aws_landing.clone();
    config.sns_http_endpoint = vendor.aws_sns.clone();
    let router = AwsSandbox::new(config, clock)?.router();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "AWS sandbox stopped");
        }
    });
    Ok(RunningAws {
        base_url: format!("http://{address}"),
        task,
    })
}
