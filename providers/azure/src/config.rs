//! Configuration of the Azure adapter: the publisher's Entra app, where the APIs live, how
//! webhook tokens are validated and how long operations are polled.
//!
//! Every key has a default except the identity keys (`tenant_id`, `client_id`, and
//! `client_secret` unless `[azure.credential]` names another kind: a certificate, workload
//! identity or managed identity, see `credential`). In TOML, under the `[azure]` section of
//! marketlink's configuration:
//!
//! ```toml
//! [azure]
//! tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47"
//! client_id = "5f3b2c1d-7a4e-4b8f-9c0d-1e2f3a4b5c6d"
//! client_secret = "..."
//! # Sandbox only:
//! # authority_host = "https://127.0.0.1:8443"
//! # marketplace_api_base = "https://127.0.0.1:8443/api"
//! # extra_ca_pem = "/path/to/sandbox-ca.pem"   (or the PEM text itself)
//! # Microsoft's SaaS API emulator (unsigned webhooks; loopback API base only):
//! # webhook_auth = "none"
//! ```

use std::time::Duration;

pub use marketlink_core::Secret;
use serde::{Deserialize, Serialize};

/// Microsoft's public Entra authority.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// SaaS Fulfillment v2 and Metering API base.
pub const DEFAULT_MARKETPLACE_API_BASE: &str = "https://marketplaceapi.microsoft.com/api";
/// The marketplace SaaS API's resource id: the audience of our API tokens and the `azp`/`appid`
/// of the tokens Microsoft puts on webhook calls.
pub const MARKETPLACE_RESOURCE_ID: &str = "20e940b3-4c77-4b0b-9a53-9e16a1b010a7";

/// Everything the Azure adapter needs. `Debug` never shows the client secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// The publisher's Entra tenant id (Partner Center, technical configuration).
    pub tenant_id: String,
    /// The publisher's Entra application (client) id: calls the APIs, is the audience of
    /// webhook tokens, and may also run the buyer sign-in.
    pub client_id: String,
    /// The app's client secret: required by the default credential (`client_secret`) only.
    #[serde(default = "no_secret")]
    pub client_secret: Secret,
    /// How the API token is obtained (`[azure.credential]`); absent: `client_secret`.
    #[serde(default)]
    pub credential: Option<crate::credential_config::CredentialConfig>,
    /// Buyer sign-in on the landing page (Microsoft requires Entra ID SSO there).
    #[serde(default)]
    pub sign_in: Option<crate::sign_in::SignInConfig>,
    /// Entra authority host; `https://login.microsoftonline.com` in production, the sandbox's
    /// `base_url` in tests and demos.
    #[serde(default = "default_authority_host")]
    pub authority_host: String,
    /// Base of the Fulfillment and Metering APIs (no trailing slash needed).
    #[serde(default = "default_api_base")]
    pub marketplace_api_base: String,
    /// Resource id our client-credentials tokens are requested for.
    #[serde(default = "default_resource_id")]
    pub marketplace_resource_id: String,
    /// An extra CA to trust (the sandbox's generated CA): PEM text, or a path to a PEM file.
    #[serde(default)]
    pub extra_ca_pem: Option<String>,
    /// Expected `aud` of webhook tokens; defaults to `client_id`.
    #[serde(default)]
    pub webhook_audience: Option<String>,
    /// Accepted `iss` of webhook tokens. `{tid}` is replaced by `tenant_id` and
    /// `{authority_host}` by `authority_host`. Empty (the default) means:
    /// `https://login.microsoftonline.com/{tid}/v2.0`, `https://sts.windows.net/{tid}/` and
    /// `{authority_host}/{tid}/v2.0` (the same as the first in production; the sandbox's issuer).
    #[serde(default)]
    pub webhook_issuers: Vec<String>,
    /// The `azp` (v2) / `appid` (v1) webhook tokens must carry: the marketplace's first-party app.
    #[serde(default = "default_resource_id")]
    pub marketplace_app_id: String,
    /// JWKS used to verify webhook tokens; by default the `jwks_uri` of the OIDC discovery
    /// document `{authority_host}/{tenant_id}/v2.0/.well-known/openid-configuration`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Clock skew allowed on `exp`/`nbf` of webhook tokens, in seconds.
    #[serde(default = "default_leeway")]
    pub jwt_leeway_secs: u64,
    /// Minimum time between two JWKS downloads triggered by an unknown `kid`, in seconds.
    #[serde(default = "default_jwks_refetch")]
    pub jwks_min_refetch_secs: u64,
    /// Keys are re-downloaded after this long even when every `kid` is known, in seconds.
    #[serde(default = "default_jwks_ttl")]
    pub jwks_max_age_secs: u64,
    /// Interval between polls of an operation (`wait_for_operation`), in milliseconds.
    #[serde(default = "default_poll_interval")]
    pub operation_poll_interval_ms: u64,
    /// How long `wait_for_operation` waits by default, in seconds.
    #[serde(default = "default_poll_timeout")]
    pub operation_timeout_secs: u64,
    /// Timeout of one HTTP call, in seconds.
    #[serde(default = "default_http_timeout")]
    pub http_timeout_secs: u64,
    /// Our window to answer a marketplace change, in seconds from the webhook's arrival
    /// (Microsoft waits 10 s, then accepts on its own; the default keeps a 2 s margin). Later,
    /// nothing is PATCHed: what Microsoft settled on is read back and applied.
    #[serde(default = "default_ack_timeout")]
    pub change_ack_timeout_secs: u64,
    /// An API token is refreshed this long before it expires, in seconds.
    #[serde(default = "default_refresh_margin")]
    pub token_refresh_margin_secs: u64,
    /// Attempts of a Resolve that fails with throttling, 5xx or a timeout, at least 1.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First wait between those attempts, in milliseconds; doubles each time.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff_ms: u64,
    /// How webhook calls are authenticated: `"entra"` (the default: the bearer token above), or
    /// `"none"` for Microsoft's SaaS API emulator, which sends webhooks without a token. `"none"`
    /// is refused unless `marketplace_api_base` is a loopback address.
    #[serde(default)]
    pub webhook_auth: WebhookAuth,
}

/// How webhook calls are authenticated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookAuth {
    /// An Entra-issued bearer JWT, checked as Microsoft's marketplace sends it.
    #[default]
    Entra,
    /// No check at all: only for Microsoft's SaaS API emulator on this machine.
    None,
}

fn no_secret() -> Secret {
    Secret::new("")
}
fn default_authority_host() -> String {
    DEFAULT_AUTHORITY_HOST.into()
}
fn default_api_base() -> String {
    DEFAULT_MARKETPLACE_API_BASE.into()
}
fn default_resource_id() -> String {
    MARKETPLACE_RESOURCE_ID.into()
}
fn default_leeway() -> u64 {
    60
}
fn default_jwks_refetch() -> u64 {
    60
}
fn default_jwks_ttl() -> u64 {
    24 * 3600
}
fn default_poll_interval() -> u64 {
    2000
}
fn default_poll_timeout() -> u64 {
    120
}
fn default_http_timeout() -> u64 {
    30
}
fn default_ack_timeout() -> u64 {
    8
}
fn default_refresh_margin() -> u64 {
    300
}
fn default_max_attempts() -> u32 {
    3
}
fn default_initial_backoff() -> u64 {
    200
}

/// `url`'s host is this machine: `localhost`, 127.0.0.0/8 or `::1`.
fn is_loopback(url: &str) -> bool {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("azure configuration: {0}")]
pub struct ConfigError(pub String);

impl AzureConfig {
    /// A configuration with every optional key at its default.
    pub fn new(
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            client_secret: Secret::new(client_secret),
            credential: None,
            sign_in: None,
            authority_host: default_authority_host(),
            marketplace_api_base: default_api_base(),
            marketplace_resource_id: default_resource_id(),
            extra_ca_pem: None,
            webhook_audience: None,
            webhook_issuers: Vec::new(),
            marketplace_app_id: default_resource_id(),
            jwks_url: None,
            jwt_leeway_secs: default_leeway(),
            jwks_min_refetch_secs: default_jwks_refetch(),
            jwks_max_age_secs: default_jwks_ttl(),
            operation_poll_interval_ms: default_poll_interval(),
            operation_timeout_secs: default_poll_timeout(),
            http_timeout_secs: default_http_timeout(),
            change_ack_timeout_secs: default_ack_timeout(),
            token_refresh_margin_secs: default_refresh_margin(),
            max_attempts: default_max_attempts(),
            initial_backoff_ms: default_initial_backoff(),
            webhook_auth: WebhookAuth::Entra,
        }
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let credential = self.credential();
        if credential == crate::credential_config::CredentialConfig::ClientSecret
            && self.client_secret.expose().trim().is_empty()
        {
            return Err(ConfigError(
                "client_secret is required (or an [azure.credential] of another kind)".into(),
            ));
        }
        credential.validate().map_err(ConfigError)?;
        if self.client_secret.expose().trim().is_empty()
            && self
                .sign_in
                .as_ref()
                .is_some_and(|s| s.client_secret.is_none())
        {
            // The sign-in redeems codes with a secret whatever gets the API token.
            return Err(ConfigError(
                "the buyer sign-in uses [azure] client_secret unless [azure.sign_in] names its own app and client_secret: set one of them".into(),
            ));
        }
        for (name, value) in [
            ("tenant_id", self.tenant_id.as_str()),
            ("client_id", self.client_id.as_str()),
            (
                "marketplace_resource_id",
                self.marketplace_resource_id.as_str(),
            ),
            ("marketplace_app_id", self.marketplace_app_id.as_str()),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError(format!("{name} is required")));
            }
        }
        for (name, value) in [
            ("authority_host", &self.authority_host),
            ("marketplace_api_base", &self.marketplace_api_base),
        ] {
            let url = url::Url::parse(value)
                .map_err(|e| ConfigError(format!("{name} `{value}` is not a URL: {e}")))?;
            if !matches!(url.scheme(), "https" | "http") {
                return Err(ConfigError(format!("{name} must be an http(s) URL")));
            }
        }
        if let Some(jwks) = &self.jwks_url {
            url::Url::parse(jwks)
                .map_err(|e| ConfigError(format!("jwks_url `{jwks}` is not a URL: {e}")))?;
        }
        if self.max_attempts == 0 {
            return Err(ConfigError("max_attempts must be at least 1".into()));
        }
        if self.operation_poll_interval_ms == 0 {
            return Err(ConfigError("operation_poll_interval_ms must be > 0".into()));
        }
        if self.webhook_auth == WebhookAuth::None && !is_loopback(&self.marketplace_api_base) {
            // Anyone could then post a webhook: allowed only while developing against an
            // emulator on this machine, never against Microsoft.
            return Err(ConfigError(format!(
                "webhook_auth = \"none\" accepts unsigned webhooks and is only for Microsoft's SaaS API emulator: marketplace_api_base `{}` must be a loopback address (127.0.0.0/8, ::1, localhost)",
                self.marketplace_api_base
            )));
        }
        Ok(())
    }

    /// The credential the API token is obtained with (`client_secret` when none is set).
    pub fn credential(&self) -> crate::credential_config::CredentialConfig {
        self.credential
            .clone()
            .unwrap_or(crate::credential_config::CredentialConfig::ClientSecret)
    }

    /// `authority_host` without a trailing slash.
    pub fn authority(&self) -> &str {
        self.authority_host.trim_end_matches('/')
    }

    /// `marketplace_api_base` without a trailing slash.
    pub fn api_base(&self) -> &str {
        self.marketplace_api_base.trim_end_matches('/')
    }

    /// The audience webhook tokens must carry.
    pub fn expected_webhook_audience(&self) -> &str {
        self.webhook_audience.as_deref().unwrap_or(&self.client_id)
    }

    /// The issuers accepted on webhook tokens, templates expanded.
    pub fn accepted_webhook_issuers(&self) -> Vec<String> {
        let templates: Vec<String> = if self.webhook_issuers.is_empty() {
            vec![
                "https://login.microsoftonline.com/{tid}/v2.0".into(),
                "https://sts.windows.net/{tid}/".into(),
                "{authority_host}/{tid}/v2.0".into(),
            ]
        } else {
            self.webhook_issuers.clone()
        };
        let mut out: Vec<String> = Vec::new();
        for template in &templates {
            let issuer = template
                .replace("{tid}", &self.tenant_id)
                .replace("{authority_host}", self.authority());
            if !out.contains(&issuer) {
                out.push(issuer);
            }
        }
        out
    }

    /// Token endpoint of the publisher tenant (v2).
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.authority(), self.tenant_id)
    }

    /// OIDC discovery document of the publisher tenant (v2).
    pub fn discovery_url(&self) -> String {
        format!(
            "{}/{}/v2.0/.well-known/openid-configuration",
            self.authority(),
            self.tenant_id
        )
    }

    /// The extra CA's PEM bytes: inline PEM text, or read from the file it names.
    pub fn extra_ca_pem_bytes(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        match &self.extra_ca_pem {
            None => Ok(None),
            Some(value) if value.trim_start().starts_with("-----BEGIN") => {
                Ok(Some(value.as_bytes().to_vec()))
            }
            Some(path) => std::fs::read(path)
                .map(Some)
                .map_err(|e| ConfigError(format!("extra_ca_pem: reading {path}: {e}"))),
        }
    }

    pub(crate) fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.operation_poll_interval_ms)
    }

    pub(crate) fn operation_timeout(&self) -> Duration {
        Duration::from_secs(self.operation_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_redaction() {
        let config: AzureConfig = serde_json::from_value(serde_json::json!({
            "tenant_id": "t1",
            "client_id": "app",
            "client_secret": "very-secret",
        }))
        .unwrap();
        assert_eq!(config.authority_host, DEFAULT_AUTHORITY_HOST);
        assert_eq!(config.marketplace_resource_id, MARKETPLACE_RESOURCE_ID);
        assert_eq!(config.expected_webhook_audience(), "app");
        assert!(!format!("{config:?}").contains("very-secret"));
        assert_eq!(
            config.accepted_webhook_issuers(),
            vec![
                "https://login.microsoftonline.com/t1/v2.0".to_string(),
                "https://sts.windows.net/t1/".to_string(),
            ]
        );
        config.validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_urls_are_refused() {
        let unknown = serde_json::from_value::<AzureConfig>(serde_json::json!({
            "tenant_id": "t", "client_id": "c", "client_secret": "s", "tenant": "x",
        }));
        assert!(unknown.is_err());
        let mut config = AzureConfig::new("t", "c", "s");
        config.authority_host = "not a url".into();
        assert!(config.validate().is_err());
        let mut config = AzureConfig::new("t", "", "s");
        config.authority_host = DEFAULT_AUTHORITY_HOST.into();
        assert!(config.validate().is_err());
    }

    #[test]
    fn unsigned_webhooks_only_with_a_loopback_api_base() {
        let parsed: AzureConfig = serde_json::from_value(serde_json::json!({
            "tenant_id": "t", "client_id": "c", "client_secret": "s", "webhook_auth": "none",
            "marketplace_api_base": "http://localhost:8080/api",
        }))
        .unwrap();
        assert_eq!(parsed.webhook_auth, WebhookAuth::None);
        parsed.validate().unwrap();
        assert_eq!(
            AzureConfig::new("t", "c", "s").webhook_auth,
            WebhookAuth::Entra
        );
        assert!(
            serde_json::from_value::<AzureConfig>(serde_json::json!({
                "tenant_id": "t", "client_id": "c", "client_secret": "s", "webhook_auth": "off",
            }))
            .is_err()
        );

        let mut config = AzureConfig::new("t", "c", "s");
        config.webhook_auth = WebhookAuth::None;
        for base in [
            "http://127.0.0.1:3978/api",
            "http://127.8.9.10/api",
            "http://[::1]:8080/api",
            "http://LOCALHOST/api",
        ] {
            config.marketplace_api_base = base.into();
            config.validate().unwrap_or_else(|e| panic!("{base}: {e}"));
        }
        for base in [
            DEFAULT_MARKETPLACE_API_BASE,
            "http://10.0.0.5/api",
            "http://localhost.example.com/api",
            "http://[::2]/api",
            "http://0.0.0.0/api",
        ] {
            config.marketplace_api_base = base.into();
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("loopback"), "{base}: {err}");
        }
        // The default mode does not care where the API is.
        config.webhook_auth = WebhookAuth::Entra;
        config.validate().unwrap();
    }

    #[test]
    fn inline_or_file_ca() {
        let mut config = AzureConfig::new("t", "c", "s");
        config.extra_ca_pem = Some("-----BEGIN CERTIFICATE-----\nx\n".into());
        assert!(config.extra_ca_pem_bytes().unwrap().is_some());
        config.extra_ca_pem = Some("/nonexistent/ca.pem".into());
        assert!(config.extra_ca_pem_bytes().is_err());
    }

    #[test]
    fn the_client_secret_is_required_by_the_default_credential_only() {
        let plain: AzureConfig =
            serde_json::from_value(serde_json::json!({"tenant_id": "t", "client_id": "c"}))
                .unwrap();
        assert_eq!(plain.credential(), crate::CredentialConfig::ClientSecret);
        let err = plain.validate().unwrap_err().to_string();
        assert!(err.contains("client_secret is required"), "{err}");
        let mut other = plain.clone();
        other.credential = Some(crate::CredentialConfig::WorkloadIdentity { token_file: None });
        other.validate().unwrap();
        other.credential = Some(crate::CredentialConfig::ClientSecret);
        assert!(other.validate().is_err());
        // A buyer sign-in sharing the API app still needs its secret.
        other.credential = Some(crate::CredentialConfig::WorkloadIdentity { token_file: None });
        other.sign_in = Some(crate::SignInConfig::new(
            "https://example.com/azure/signin/callback",
        ));
        let err = other.validate().unwrap_err().to_string();
        assert!(err.contains("buyer sign-in"), "{err}");
        other.client_secret = Secret::new("s");
        other.validate().unwrap();
    }
}
