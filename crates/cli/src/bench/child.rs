//! `marketlink serve` (this very binary) as a child process, configured as an operator
//! configures it: a TOML file and `MARKETLINK_*` variables. The benchmarks that measure what an
//! operator's deployment does (`bench day`, `bench api`) run their server this way: its
//! workers, logging and middleware as deployed, its own runtime and allocator, its memory and
//! CPU readable from `/proc`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;

/// The usage API key of the demo configuration (`demo.toml`) the benchmarks' servers run on.
pub(super) const DEMO_USAGE_KEY: &str = "demo-usage-key-0123";

/// A free loopback port (bound, then released for the child to take; nothing else on this
/// host is expected to take it in between).
pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A child `marketlink serve`, killed when dropped.
pub(super) struct ChildServer {
    child: Child,
    log: PathBuf,
    pub addr: SocketAddr,
    pub url: String,
}

impl ChildServer {
    /// Starts `marketlink serve` in `dir` with `config` (TOML, written there) on `database`,
    /// listening on `port`; `env` is set last (a `RUST_LOG` there wins over the
    /// configuration's filter, which applies otherwise). Its stderr goes to a log file in `dir`.
    pub(super) fn spawn(
        dir: &Path,
        config: &str,
        database: &str,
        port: u16,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let path = dir.join("marketlink.toml");
        std::fs::write(&path, config)?;
        let log = dir.join("server.log");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let url = format!("http://{addr}");
        let mut command = Command::new(std::env::current_exe()?);
        command
            .current_dir(dir)
            .args(["serve", "--config"])
            .arg(&path)
            .env_remove("MARKETLINK_CONFIG")
            .env_remove("RUST_LOG")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                dir.join("no-aws-credentials"),
            )
            .env("MARKETLINK_SERVER__BIND", addr.to_string())
            .env("MARKETLINK_SERVER__PUBLIC_URL", &url)
            .env("MARKETLINK_SERVER__SESSION_SECRET", "s".repeat(64))
            .env("MARKETLINK_DATABASE__URL", database)
            .env("MARKETLINK_DATABASE__MIGRATE_ON_START", "true");
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("spawning marketlink serve")?;
        Ok(Self {
            child,
            log,
            addr,
            url,
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for `/readyz` 200, and with `warm` for the entitlement index to have loaded
    /// every subscription (ADR 0022); how long it took.
    pub(super) async fn ready(&mut self, warm: bool) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let client = reqwest::Client::new();
        while started.elapsed() < Duration::from_secs(120) {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("marketlink serve exited: {status}\n{}", self.log_tail());
            }
            if let Ok(answer) = client.get(format!("{}/readyz", self.url)).send().await
                && answer.status().is_success()
                && let Ok(state) = answer.json::<serde_json::Value>().await
                && (!warm || state["entitlements"] == "warm")
            {
                return Ok(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!(
            "marketlink serve not ready within 120 s\n{}",
            self.log_tail()
        )
    }

    /// The child's CPU time so far (user + system), from `/proc`; zero elsewhere.
    pub(super) fn cpu(&self) -> Duration {
        super::process::cpu_of(self.pid())
    }

    /// Kills the child (SQLite's write-ahead log and PostgreSQL both survive a kill) and
    /// waits for it.
    pub(super) fn stop(&mut self) {
        if let Err(error) = self.child.kill() {
            tracing::debug!(%error, "the benchmark's server had already stopped");
        }
        let _status = self.child.wait();
    }

    /// The last 20 lines the child logged.
    pub(super) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.stop();
    }
}
