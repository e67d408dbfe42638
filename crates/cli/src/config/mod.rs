//! Configuration: built-in defaults, then a TOML file, then `MARKETLINK_*` environment
//! variables (env wins). Nested keys use `__` in env names: `MARKETLINK_DATABASE__URL`.
//! Unknown keys are errors, so a typo is reported instead of silently ignored.
//!
//! One module per section of our own (`server`, `database`, `log`, `metering`, `reconcile`),
//! each validating itself; `load` merges the layers. Sections owned by other crates
//! (catalog, providers, webhooks, email) are their types, used as they are.

mod database;
mod load;
mod log;
mod metering;
mod reconcile;
mod server;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::{
    database::DatabaseConfig,
    log::{LogConfig, LogFormat},
    metering::MeteringConfig,
    reconcile::ReconcileConfig,
    server::ServerConfig,
};

/// The annotated example printed by `marketlink config` and kept in `marketlink.example.toml`.
pub const EXAMPLE: &str = include_str!("../../../../marketlink.example.toml");

/// What `marketlink demo` layers under the user's configuration, for a sandbox at `aws`.
pub fn demo_base(aws_sandbox: std::net::SocketAddr) -> String {
    include_str!("../demo.toml")
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
    /// Google Cloud Marketplace; absent: not offered. Keys: providers/gcp/README.md.
    pub gcp: Option<marketlink_gcp::GcpConfig>,
    /// Usage reporting and delivery to the marketplaces.
    pub metering: MeteringConfig,
    /// The operators' admin portal at /admin.
    pub admin: AdminConfig,
    /// Provisioning webhooks to the vendor's product (Standard Webhooks); absent: none sent.
    pub webhooks: Option<marketlink_engine::webhooks::WebhookSettings>,
    /// Outgoing mail (verification links) over SMTP; absent: none sent, operators confirm
    /// sign-up addresses in the admin portal.
    pub email: Option<marketlink_engine::mail::EmailSettings>,
    /// Periodic comparison with the marketplaces' own view (`marketlink reconcile`).
    pub reconcile: ReconcileConfig,
    /// Requests per client and kind: sign-in, sign-up, landing, notifications, vendor API.
    pub rate_limits: marketlink_web::limits::RateLimits,
    /// How long finished rows (usage, messages, audit) are kept before pruning.
    pub retention: marketlink_engine::retention::RetentionSettings,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Operators: `{ email, password_hash }`, the hash from `marketlink admin hash-password`.
    /// Empty: nobody can sign in to the portal.
    pub users: Vec<marketlink_web::admin::AdminUser>,
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
    /// Checks what deserialising cannot: URL schemes, lengths of secrets, limits. The first
    /// problem found is returned, naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.database.validate()?;
        self.catalog
            .validate()
            .map_err(|message| ConfigError::BadValue {
                key: "catalog",
                message,
            })?;
        if let Some(webhooks) = &self.webhooks {
            validate_webhooks(webhooks)?;
        }
        if let Some(gcp) = &self.gcp {
            // The provider checks it again when built; here it fails `marketlink` at load,
            // naming the section, before anything starts.
            gcp.validate().map_err(|message| ConfigError::BadValue {
                key: "gcp",
                message,
            })?;
        }
        if let Some(message) = self.retention.problem() {
            return Err(ConfigError::BadValue {
                key: "retention",
                message,
            });
        }
        if let Some(email) = &self.email {
            email
                .validate()
                .map_err(|(key, message)| ConfigError::BadValue { key, message })?;
        }
        self.metering.validate()
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

fn validate_webhooks(
    webhooks: &marketlink_engine::webhooks::WebhookSettings,
) -> Result<(), ConfigError> {
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
    Ok(())
}
