//! The Google sandbox in a journey's stack: started beside the others, as `marketlink demo`
//! does, with the provider configured against it.

use std::{path::Path, sync::Arc};

use marketlink_cli::{config::Config, sandbox};
use marketlink_core::SystemClock;
use marketlink_sandbox::gcp::GcpSandboxConfig;
use tokio_util::sync::CancellationToken;

use crate::{Stack, launch};

/// Like [`crate::start_full`] with the Google sandbox too, as `marketlink demo` runs it, its scenario
/// adjusted by `tune_gcp`. With `push`, the sandbox pushes to `/gcp/pubsub` instead of
/// holding messages for pull.
pub async fn start_gcp(
    push: bool,
    tune_gcp: impl FnOnce(&mut GcpSandboxConfig),
    tune_config: impl FnOnce(&mut Config),
) -> Stack {
    let mut scenario = sandbox::gcp_demo_scenario();
    // Pub/Sub redelivers quickly here so that a refused push is seen within a journey.
    scenario.push_retry_delays_ms = vec![50, 100, 200];
    tune_gcp(&mut scenario);
    let gcp = GcpLaunch { scenario, push };
    launch(|_| {}, |_| {}, tune_config, None, 1, true, Some(gcp))
        .await
        .0
}

/// The Google sandbox a stack starts with.
pub(crate) struct GcpLaunch {
    pub scenario: GcpSandboxConfig,
    pub push: bool,
}

/// Starts the Google sandbox for the server at `config`'s public URL and points `config`'s
/// `[gcp]` at it (its key file written to `dir`).
pub(crate) async fn start_google(
    launch: GcpLaunch,
    config: &mut Config,
    dir: &Path,
    shutdown: CancellationToken,
) -> sandbox::RunningGcp {
    let app_url = config.server.public_url.clone();
    let mut scenario = launch.scenario;
    if launch.push {
        scenario.push_endpoint = Some(format!("{app_url}/gcp/pubsub"));
    }
    let running = sandbox::start_gcp(
        "127.0.0.1:0".parse().expect("addr"),
        scenario,
        &sandbox::VendorUrls::for_public_url(&app_url),
        Arc::new(SystemClock),
        shutdown,
    )
    .await
    .expect("Google sandbox starts");
    let key_file = dir.join("gcp-service-account.json");
    config.gcp = Some(
        sandbox::gcp_provider_config(&running, &key_file, &app_url)
            .expect("Google provider configuration"),
    );
    running
}
