//! `[server]`: where the HTTP server listens, how buyers reach it, cookies and metrics.

use std::net::SocketAddr;

use marketlink_core::Secret;
use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP server listens on.
    pub bind: SocketAddr,
    /// The URL buyers and marketplaces use to reach this server (landing and webhook URLs
    /// are derived from it).
    pub public_url: String,
    /// Largest request body accepted.
    pub body_limit_bytes: usize,
    /// Requests taking longer are answered 408.
    pub request_timeout_secs: u64,
    /// On shutdown, how long in-flight requests may take to finish.
    pub shutdown_grace_secs: u64,
    /// A client must send a request's headers (or its next request on a kept-alive
    /// connection) within this, or the connection is closed (slowloris).
    pub header_read_timeout_secs: u64,
    /// Open connections at most; one more is closed at once.
    pub max_connections: usize,
    /// Key material for the session cookie (at least 64 characters, random). Every replica
    /// must share it. When unset, a random key is made at start-up and sessions end on restart.
    pub session_secret: Option<Secret>,
    /// Mark cookies Secure (https only). Default: on when `public_url` is https.
    pub secure_cookies: Option<bool>,
    /// Serve Prometheus metrics at `/metrics`.
    pub metrics: bool,
    /// When set, `/metrics` answers only `Authorization: Bearer <metrics_token>` (compared in
    /// constant time). At least 16 characters.
    pub metrics_token: Option<Secret>,
    /// Without `metrics_token`: `true` lets anyone who reaches the port scrape (the demo);
    /// `false` (default) answers every scrape 401.
    pub metrics_public: bool,
    /// Argon2 password checks run at once (each holds 19 MiB); default: the number of CPUs.
    /// Sign-ins beyond them wait up to `password_queue_wait_ms`, then get 503.
    pub password_hash_concurrency: Option<usize>,
    pub password_queue_wait_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://127.0.0.1:8080".into(),
            body_limit_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            shutdown_grace_secs: 20,
            header_read_timeout_secs: 10,
            max_connections: 4096,
            session_secret: None,
            secure_cookies: None,
            metrics: true,
            metrics_token: None,
            metrics_public: false,
            password_hash_concurrency: None,
            password_queue_wait_ms: 3000,
        }
    }
}

impl ServerConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.public_url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::BadValue {
                key: "server.public_url",
                message: format!("`{url}` must start with http:// or https://"),
            });
        }
        if let Some(secret) = &self.session_secret
            && secret.expose().len() < 64
        {
            return Err(ConfigError::BadValue {
                key: "server.session_secret",
                message: "must be at least 64 characters (e.g. `openssl rand -base64 48`)".into(),
            });
        }
        if let Some(token) = &self.metrics_token
            && token.expose().len() < 16
        {
            return Err(ConfigError::BadValue {
                key: "server.metrics_token",
                message: "must be at least 16 characters".into(),
            });
        }
        if self.header_read_timeout_secs == 0 || self.max_connections == 0 {
            return Err(ConfigError::BadValue {
                key: "server.header_read_timeout_secs / server.max_connections",
                message: "must be at least 1".into(),
            });
        }
        if self.password_hash_concurrency == Some(0) {
            return Err(ConfigError::BadValue {
                key: "server.password_hash_concurrency",
                message: "must be at least 1".into(),
            });
        }
        if self.body_limit_bytes < 1024 {
            return Err(ConfigError::BadValue {
                key: "server.body_limit_bytes",
                message: "must be at least 1024".into(),
            });
        }
        Ok(())
    }
}
