//! What every test of the `marketlink` binary needs: the binary with a clean environment,
//! a free port, waiting for readiness and a graceful stop.
#![allow(dead_code)] // each test binary uses its own subset

use std::{
    net::TcpListener,
    process::{Child, Command},
    time::{Duration, Instant},
};

pub const BIN: &str = env!("CARGO_BIN_EXE_marketlink");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Variables the AWS credential chain reads: none of the caller's may leak into a test.
pub const AWS_CHAIN_VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];

pub fn marketlink(dir: &std::path::Path) -> Command {
    marketlink_at(std::path::Path::new(BIN), dir)
}

/// Like [`marketlink`], for another build of the binary (the previous release's).
pub fn marketlink_at(bin: &std::path::Path, dir: &std::path::Path) -> Command {
    let mut command = Command::new(bin);
    command
        .current_dir(dir)
        .env_remove("MARKETLINK_CONFIG")
        .env("RUST_LOG", "warn")
        // The credential chain must find only what a test gives it, and never reach
        // 169.254.169.254 (the EC2 instance metadata service).
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        );
    for name in AWS_CHAIN_VARIABLES {
        command.env_remove(name);
    }
    command
}

pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

pub async fn wait_ready(base: &str) -> reqwest::Response {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(format!("{base}/readyz")).send().await {
            return response;
        }
        assert!(
            Instant::now() < deadline,
            "server did not come up at {base}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn terminate(server: &mut Server) -> std::process::ExitStatus {
    let pid = server.0.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "server ignored SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
