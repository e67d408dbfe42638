//! Configuration: built-in defaults, then a TOML file, then `MARKETLINK_*` environment
//! variables (env wins). Nested keys use `__` in env names: `MARKETLINK_DATABASE__URL`.
//! Unknown keys are errors, so a typo is reported instead of silently ignored.

use std::{net::SocketAddr, path::Path, time::Duration};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use serde::{Deserialize, Serialize};

/// The annotated example printed by `marketlink config` and kept in `marketlink.example.toml`.
pub const EXAMPLE: &str = include_str!("../../../marketlink.example.toml");

/// What `marketlink demo` layers under the user's configuration, for a sandbox at `aws`.
pub fn demo_base(aws_sandbox: std::net::SocketAddr) -> String {
    include_str!("demo.toml")
        .replace("{aws_sandbox}", &format!("http://{aws_sandbox}"))
        .replace("{aws_sandbox_host}", &aws_sandbox.to_string())
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    /// The vendor's name, logo and colour on every page.
    pub branding: marketlink_web::pages::Branding,
    /// The vendor's products, where they are listed, plans, dimensions and features.
    pub catalog: marketlink_core::Catalog,
    /// How change requests from a marketplace are answered.
    pub changes: marketlink_engine::ChangePolicy,
    /// AWS Marketplace; absent: AWS is not offered. Keys: providers/aws/README.md.
    pub aws: Option<marketlink_aws::AwsConfig>,
    /// Microsoft's commercial marketplace; absent: not offered. Keys: providers/azure docs.
    pub azure: Option<marketlink_azure::AzureConfig>,
    /// Usage reporting and delivery to the marketplaces.
    pub metering: MeteringConfig,
    /// The operators' admin portal at /admin.
    pub admin: AdminConfig,
    /// Provisioning webhooks to the vendor's product (Standard Webhooks); absent: none sent.
    pub webhooks: Option<marketlink_engine::webhooks::WebhookSettings>,
    /// Periodic comparison with the marketplaces' own view (`marketlink reconcile`).
    pub reconcile: ReconcileConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    /// How often `serve` reconciles, in seconds; 0 turns the periodic run off.
    pub interval_secs: u64,
    /// A claimed subscription still pending after this long, while the marketplace waits for
    /// our activation, has its activation run again.
    pub stuck_after_secs: u64,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            interval_secs: 3600,
            stuck_after_secs: 900,
        }
    }
}

impl ReconcileConfig {
    /// The engine's settings for a run.
    pub fn settings(&self, dry_run: bool) -> marketlink_engine::reconcile::ReconcileSettings {
        marketlink_engine::reconcile::ReconcileSettings {
            dry_run,
            stuck_after: time::Duration::seconds(
                i64::try_from(self.stuck_after_secs).unwrap_or(i64::MAX),
            ),
        }
    }

    /// The periodic run's interval; `None` when turned off.
    pub fn interval(&self) -> Option<Duration> {
        (self.interval_secs > 0).then(|| Duration::from_secs(self.interval_secs))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeteringConfig {
    /// Keys the vendor's product presents to `POST /api/v1/usage` (`Authorization: Bearer`).
    /// Only their SHA-256 digests are kept in memory. Empty: the usage API refuses everything.
    pub api_keys: Vec<Secret>,
    /// How often closed hours are sent to the marketplaces.
    pub flush_interval_secs: u64,
    /// Records per marketplace call (1 to 25).
    pub batch_size: usize,
    /// Provider calls in flight at once.
    pub concurrency: usize,
    /// How long after an hour ends its total is sent (late events still count).
    pub settle_secs: u64,
    /// How long a flusher holds claimed hours before another replica may take them over.
    pub lease_secs: u64,
    /// Events accepted per request.
    pub max_batch_events: usize,
}

impl Default for MeteringConfig {
    fn default() -> Self {
        Self {
            api_keys: Vec::new(),
            flush_interval_secs: 60,
            batch_size: 25,
            concurrency: 4,
            settle_secs: 300,
            lease_secs: 300,
            max_batch_events: 10_000,
        }
    }
}

impl MeteringConfig {
    /// The engine's settings; API keys become SHA-256 digests here.
    pub fn settings(&self) -> marketlink_engine::metering::MeteringSettings {
        use sha2::Digest;
        let defaults = marketlink_engine::metering::MeteringSettings::default();
        let secs = |s: u64| time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX));
        marketlink_engine::metering::MeteringSettings {
            api_key_hashes: self
                .api_keys
                .iter()
                .map(|k| sha2::Sha256::digest(k.expose().as_bytes()).into())
                .collect(),
            flush_interval: Duration::from_secs(self.flush_interval_secs),
            batch_size: self.batch_size,
            concurrency: self.concurrency,
            settle: secs(self.settle_secs),
            lease: secs(self.lease_secs),
            max_batch_events: self.max_batch_events,
            ..defaults
        }
    }
}

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
}

/// A configuration secret: deserialised as a string, never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite:marketlink.db` (embedded, created when missing) or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
    /// Apply pending migrations when `serve` starts.
    pub migrate_on_start: bool,
    /// SQLite only: milliseconds between background WAL checkpoints (ADR 0008). Shorter keeps
    /// request latency tails low under steady writes; longer does less I/O in bulk work.
    pub sqlite_checkpoint_ms: u64,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("DatabaseConfig")
            .field("url", &marketlink_store::redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("sqlite_checkpoint_ms", &self.sqlite_checkpoint_ms)
            .field("migrate_on_start", &self.migrate_on_start)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Operators: `{ email, password_hash }`, the hash from `marketlink admin hash-password`.
    /// Empty: nobody can sign in to the portal.
    pub users: Vec<marketlink_web::admin::AdminUser>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines; `text` is accepted too.
    #[serde(alias = "text")]
    Pretty,
    /// One JSON object per line, with the fields of every enclosing span (`request_id`).
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `marketlink=debug,sqlx=warn`; `RUST_LOG` wins.
    pub filter: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://127.0.0.1:8080".into(),
            body_limit_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            shutdown_grace_secs: 20,
            session_secret: None,
            secure_cookies: None,
            metrics: true,
            metrics_token: None,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite:marketlink.db".into(),
            max_connections: 10,
            migrate_on_start: true,
            sqlite_checkpoint_ms: 250,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            filter: "info".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("invalid configuration: `{key}`: {message}")]
    BadValue { key: &'static str, message: String },
}

impl Config {
    /// Loads defaults ← `base` (TOML, if given) ← `file` (if given) ← `MARKETLINK_*`
    /// environment, then validates.
    pub fn load_over(base: Option<&str>, file: Option<&Path>) -> Result<Self, ConfigError> {
        check_env_names(std::env::vars().map(|(name, _)| name))?;
        let env = Env::prefixed(ENV_PREFIX)
            .filter(|key| key.as_str().contains("__"))
            .split("__");
        Self::load_layers(base, file, env)
    }

    #[cfg(test)]
    fn load_from(file: Option<&Path>, env: Env) -> Result<Self, ConfigError> {
        Self::load_layers(None, file, env)
    }

    fn load_layers(base: Option<&str>, file: Option<&Path>, env: Env) -> Result<Self, ConfigError> {
        // Every struct is `#[serde(default)]`, so an empty figment yields the defaults.
        let mut figment = Figment::new();
        if let Some(base) = base {
            figment = figment.merge(Toml::string(base));
        }
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.display().to_string()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let config: Config = figment
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.server.public_url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::BadValue {
                key: "server.public_url",
                message: format!("`{url}` must start with http:// or https://"),
            });
        }
        let db = &self.database.url;
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return Err(ConfigError::BadValue {
                key: "database.url",
                message: format!(
                    "`{}` must start with `sqlite:` or `postgres://`",
                    marketlink_store::redact_url(db)
                ),
            });
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::BadValue {
                key: "database.max_connections",
                message: "must be at least 1".into(),
            });
        }
        self.catalog
            .validate()
            .map_err(|message| ConfigError::BadValue {
                key: "catalog",
                message,
            })?;
        if let Some(webhooks) = &self.webhooks {
            webhooks.key().map_err(|message| ConfigError::BadValue {
                key: "webhooks.secret",
                message,
            })?;
            if !(webhooks.url.starts_with("https://") || webhooks.url.starts_with("http://")) {
                return Err(ConfigError::BadValue {
                    key: "webhooks.url",
                    message: format!("`{}` must start with http:// or https://", webhooks.url),
                });
            }
        }
        if let Some(secret) = &self.server.session_secret
            && secret.expose().len() < 64
        {
            return Err(ConfigError::BadValue {
                key: "server.session_secret",
                message: "must be at least 64 characters (e.g. `openssl rand -base64 48`)".into(),
            });
        }
        if !(1..=25).contains(&self.metering.batch_size) {
            return Err(ConfigError::BadValue {
                key: "metering.batch_size",
                message: "must be 1 to 25 (the marketplaces' limit per call)".into(),
            });
        }
        if self.metering.lease_secs < 30 || self.metering.flush_interval_secs == 0 {
            return Err(ConfigError::BadValue {
                key: "metering.lease_secs",
                message: "lease_secs must be at least 30 and flush_interval_secs at least 1".into(),
            });
        }
        if self.metering.api_keys.iter().any(|k| k.expose().len() < 16) {
            return Err(ConfigError::BadValue {
                key: "metering.api_keys",
                message: "every key must be at least 16 characters".into(),
            });
        }
        if let Some(token) = &self.server.metrics_token
            && token.expose().len() < 16
        {
            return Err(ConfigError::BadValue {
                key: "server.metrics_token",
                message: "must be at least 16 characters".into(),
            });
        }
        if self.server.body_limit_bytes < 1024 {
            return Err(ConfigError::BadValue {
                key: "server.body_limit_bytes",
                message: "must be at least 1024".into(),
            });
        }
        Ok(())
    }

    pub fn secure_cookies(&self) -> bool {
        self.server
            .secure_cookies
            .unwrap_or_else(|| self.server.public_url.starts_with("https://"))
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.server.request_timeout_secs)
    }
}

const ENV_PREFIX: &str = "MARKETLINK_";

/// `MARKETLINK_*` variables that are not configuration keys.
const NON_CONFIG_ENV: &[&str] = &["MARKETLINK_CONFIG"];

/// Every configuration key is nested (`section.key`), so a `MARKETLINK_` variable without a
/// double underscore is almost always a typo such as `MARKETLINK_DATABASE_URL`: say so rather
/// than ignore it. `MARKETLINK_TEST_*` belongs to the test suite.
fn check_env_names(names: impl Iterator<Item = String>) -> Result<(), ConfigError> {
    for name in names {
        let Some(key) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if key.contains("__") || key.starts_with("TEST_") || NON_CONFIG_ENV.contains(&name.as_str())
        {
            continue;
        }
        let suggestion = key.to_ascii_uppercase().replacen('_', "__", 1);
        return Err(ConfigError::Invalid(format!(
            "environment variable {name} is not a configuration key; nested keys use a double \
             underscore, e.g. {ENV_PREFIX}{suggestion}"
        )));
    }
    Ok(())
}

/// Figment errors name the key and the source; keep every error, one per line.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                String::new()
            } else {
                format!("`{}`: ", e.path.join("."))
            };
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            format!("{key}{}{source}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn no_env() -> Env {
        Env::prefixed("MARKETLINK_TEST_UNUSED_PREFIX_")
    }

    fn file(contents: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        f
    }

    #[test]
    fn defaults_need_no_configuration() {
        let config = Config::load_from(None, no_env()).unwrap();
        assert_eq!(config, Config::default());
        assert!(config.database.url.starts_with("sqlite:"));
    }

    #[test]
    fn the_example_file_is_valid_and_matches_the_defaults() {
        let f = file(EXAMPLE);
        let config = Config::load_from(Some(f.path()), no_env()).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn file_values_apply() {
        let f =
            file("[server]\nbind = \"0.0.0.0:9000\"\n[database]\nurl = \"postgres://u@h/db\"\n");
        let config = Config::load_from(Some(f.path()), no_env()).unwrap();
        assert_eq!(config.server.bind.port(), 9000);
        assert_eq!(config.database.url, "postgres://u@h/db");
    }

    #[test]
    #[expect(clippy::result_large_err, reason = "figment's test API")]
    fn environment_wins_over_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("m.toml", "[database]\nurl = \"sqlite:file.db\"\n")?;
            jail.set_env("MARKETLINK_DATABASE__URL", "sqlite:env.db");
            jail.set_env("MARKETLINK_SERVER__BODY_LIMIT_BYTES", "4096");
            let config = Config::load_over(None, Some(Path::new("m.toml"))).unwrap();
            assert_eq!(config.database.url, "sqlite:env.db");
            assert_eq!(config.server.body_limit_bytes, 4096);
            Ok(())
        });
    }

    #[test]
    fn unknown_key_is_named() {
        let f = file("[server]\nbnd = \"0.0.0.0:9000\"\n");
        let err = Config::load_from(Some(f.path()), no_env())
            .unwrap_err()
            .to_string();
        assert!(err.contains("bnd"), "{err}");
        assert!(err.contains("server"), "{err}");
    }

    #[test]
    fn bad_value_names_the_key() {
        let f = file("[server]\nbind = \"not an address\"\n");
        let err = Config::load_from(Some(f.path()), no_env())
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.bind"), "{err}");

        let f = file("[database]\nurl = \"mysql://x\"\n");
        let err = Config::load_from(Some(f.path()), no_env())
            .unwrap_err()
            .to_string();
        assert!(err.contains("database.url"), "{err}");

        let f = file("[server]\npublic_url = \"ftp://x\"\n");
        let err = Config::load_from(Some(f.path()), no_env())
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.public_url"), "{err}");

        let f = file("[log]\nformat = \"xml\"\n");
        let err = Config::load_from(Some(f.path()), no_env())
            .unwrap_err()
            .to_string();
        assert!(err.contains("log.format"), "{err}");
    }

    #[test]
    fn single_underscore_env_names_are_reported() {
        let ok = [
            "PATH",
            "MARKETLINK_CONFIG",
            "MARKETLINK_TEST_SKIP_POSTGRES",
            "MARKETLINK_DATABASE__URL",
        ];
        check_env_names(ok.iter().map(|s| s.to_string())).unwrap();
        let err = check_env_names(std::iter::once("MARKETLINK_DATABASE_URL".to_string()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("MARKETLINK_DATABASE__URL"), "{err}");
    }

    #[test]
    fn the_demo_configuration_is_valid() {
        let base = demo_base("127.0.0.1:9090".parse().unwrap());
        let config = Config::load_layers(Some(&base), None, no_env()).unwrap();
        assert_eq!(config.catalog.products.len(), 2);
        let aws = config.aws.unwrap();
        assert_eq!(aws.endpoint_url.as_deref(), Some("http://127.0.0.1:9090"));
        assert_eq!(aws.products.len(), 2);
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Config::load_from(Some(Path::new("/nonexistent/m.toml")), no_env()).unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile(_)));
    }

    #[test]
    fn log_format_takes_text_and_json() {
        let f = file("[log]\nformat = \"text\"\n");
        let config = Config::load_from(Some(f.path()), no_env()).unwrap();
        assert_eq!(config.log.format, LogFormat::Pretty);
        let f = file("[log]\nformat = \"json\"\n");
        let config = Config::load_from(Some(f.path()), no_env()).unwrap();
        assert_eq!(config.log.format, LogFormat::Json);
    }

    #[test]
    fn metrics_token_is_checked_and_not_printed() {
        let f = file("[server]\nmetrics_token = \"short\"\n");
        let err = Config::load_from(Some(f.path()), no_env())
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.metrics_token"), "{err}");
        let f = file("[server]\nmetrics = false\nmetrics_token = \"scrape-token-0123456789\"\n");
        let config = Config::load_from(Some(f.path()), no_env()).unwrap();
        assert!(!config.server.metrics);
        assert!(!format!("{config:?}").contains("scrape-token"));
    }

    #[test]
    fn database_password_is_not_printed() {
        let mut config = Config::default();
        config.database.url = "postgres://app:hunter2@db/marketlink".into();
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
