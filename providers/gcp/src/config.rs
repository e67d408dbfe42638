//! `[gcp]`: the Google Cloud Marketplace provider's configuration.

use std::path::PathBuf;

use serde::Deserialize;

/// The cloud-commerce-partner key URL: the sign-up JWT's `iss` and where its keys are
/// published as `{kid: PEM certificate}` (gcp.md §1, S1/S2).
pub const SIGNUP_ISSUER: &str = "https://www.googleapis.com/robot/v1/metadata/x509/cloud-commerce-partner@system.gserviceaccount.com";

/// Google's OAuth JWK set, which signs the OIDC tokens of Pub/Sub push (gcp.md §2, S17). The
/// `{kid: PEM}` form at `oauth2/v1/certs` is read as well.
pub const GOOGLE_OIDC_CERTS: &str = "https://www.googleapis.com/oauth2/v3/certs";

/// The push token's `iss` (S17): Google writes either form.
pub const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcpConfig {
    /// The partner id Google gave the listing (`DEMO-<project>` in the codelab), the `{p}` of
    /// `providers/{p}/...` and the `providerId` of every Pub/Sub message.
    pub provider_id: String,
    /// The product's service name, e.g. `example.gcpmarketplace.example.com`: the sign-up
    /// JWT's `aud` and the Service Control service.
    pub service_name: String,
    /// Where the sign-up JWT's keys are fetched; pinned, never taken from the token.
    pub signup_keys_url: String,
    /// Where the Pub/Sub push tokens' keys are fetched.
    pub oidc_keys_url: String,
    pub procurement_url: String,
    pub pubsub_url: String,
    pub service_control_url: String,
    /// Replaces the key file's `token_uri` (the sandbox's `/token`); absent: the file's own.
    pub token_url: Option<String>,
    /// A service-account key file; absent: Application Default Credentials (workload
    /// identity, metadata server, `gcloud`), found on first use.
    pub credentials_file: Option<PathBuf>,
    /// Pub/Sub push to `POST /gcp/pubsub`; absent: push is refused.
    pub push: Option<PushConfig>,
    /// Pull subscription, `projects/<project>/subscriptions/<name>`; absent: no pull.
    pub subscription: Option<String>,
    /// Seconds the sign-up and push keys are trusted before they are fetched again.
    pub keys_cache_secs: u64,
    /// Seconds of clock skew allowed on `exp` and `iat`.
    pub clock_skew_secs: u64,
    pub request_timeout_secs: u64,
}

/// How Google's push subscription authenticates itself (S17).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// The token's `aud`: by default the push endpoint's URL, e.g.
    /// `https://marketlink.example.com/gcp/pubsub`.
    pub audience: String,
    /// The `--push-auth-service-account` of the subscription.
    pub service_account_email: String,
    /// The token's issuer; absent: Google's ([`GOOGLE_ISSUERS`]). The sandbox names its own.
    #[serde(default)]
    pub issuer: Option<String>,
}

impl Default for GcpConfig {
    fn default() -> Self {
        Self {
            provider_id: String::new(),
            service_name: String::new(),
            signup_keys_url: SIGNUP_ISSUER.to_owned(),
            oidc_keys_url: GOOGLE_OIDC_CERTS.to_owned(),
            procurement_url: "https://cloudcommerceprocurement.googleapis.com".to_owned(),
            pubsub_url: "https://pubsub.googleapis.com".to_owned(),
            service_control_url: "https://servicecontrol.googleapis.com".to_owned(),
            token_url: None,
            credentials_file: None,
            push: None,
            subscription: None,
            keys_cache_secs: 3600,
            clock_skew_secs: 60,
            request_timeout_secs: 10,
        }
    }
}

impl GcpConfig {
    /// What serde cannot check; called by `GcpProvider::new`.
    pub fn validate(&self) -> Result<(), String> {
        if self.provider_id.trim().is_empty() {
            return Err(
                "[gcp] provider_id is required (Producer Portal, e.g. DEMO-my-project)".into(),
            );
        }
        if self.service_name.trim().is_empty() {
            return Err("[gcp] service_name is required (the product's service domain)".into());
        }
        let urls = [
            ("signup_keys_url", &self.signup_keys_url),
            ("oidc_keys_url", &self.oidc_keys_url),
            ("procurement_url", &self.procurement_url),
            ("pubsub_url", &self.pubsub_url),
            ("service_control_url", &self.service_control_url),
        ];
        for (key, value) in urls {
            url::Url::parse(value).map_err(|e| format!("[gcp] {key} is not a URL: {e}"))?;
        }
        if let Some(push) = &self.push
            && (push.audience.is_empty() || push.service_account_email.is_empty())
        {
            return Err("[gcp.push] needs audience and service_account_email".into());
        }
        if let Some(sub) = &self.subscription
            && (!sub.starts_with("projects/") || !sub.contains("/subscriptions/"))
        {
            return Err(
                "[gcp] subscription must be projects/<project>/subscriptions/<name>".into(),
            );
        }
        if self.request_timeout_secs == 0 || self.keys_cache_secs == 0 {
            return Err("[gcp] request_timeout_secs and keys_cache_secs must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_the_listing_ids() {
        assert!(GcpConfig::default().validate().is_err());
        let config = GcpConfig {
            provider_id: "DEMO-p".into(),
            service_name: "svc.example.com".into(),
            ..GcpConfig::default()
        };
        assert_eq!(config.validate(), Ok(()));
        let bad = GcpConfig {
            subscription: Some("my-sub".into()),
            ..config
        };
        assert!(bad.validate().is_err());
    }
}
