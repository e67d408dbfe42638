//! The service account's OAuth access token, from `gcp_auth`: a key file (its `token_uri`
//! optionally replaced, so the sandbox can issue tokens) or Application Default Credentials.
//! ADC is looked up on first use only, so building a provider never probes the metadata
//! server.

use std::{path::Path, sync::Arc};

use gcp_auth::{CustomServiceAccount, TokenProvider};
use marketlink_core::ProviderError;
use tokio::sync::OnceCell;

/// The only scope the Partner Procurement API takes; it covers Pub/Sub and Service Control.
const SCOPES: &[&str] = &["https://www.googleapis.com/auth/cloud-platform"];

pub(crate) struct Credentials {
    key_file: Option<Arc<CustomServiceAccount>>,
    adc: OnceCell<Arc<dyn TokenProvider>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.key_file.is_some() {
            "key file"
        } else {
            "ADC"
        };
        f.debug_struct("Credentials")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    pub(crate) fn new(
        key_file: Option<&Path>,
        token_url: Option<&str>,
    ) -> Result<Self, ProviderError> {
        let key_file = match key_file {
            None => None,
            Some(path) => Some(Arc::new(read_key_file(path, token_url)?)),
        };
        Ok(Self {
            key_file,
            adc: OnceCell::new(),
        })
    }

    /// A bearer token, cached by `gcp_auth` until shortly before it expires.
    pub(crate) async fn bearer(&self) -> Result<String, ProviderError> {
        let provider: Arc<dyn TokenProvider> = match &self.key_file {
            Some(account) => account.clone(),
            None => self
                .adc
                .get_or_try_init(gcp_auth::provider)
                .await
                .map_err(|e| {
                    ProviderError::Configuration(format!(
                        "no Google credentials found (set [gcp] credentials_file or run with \
                         Application Default Credentials): {e}"
                    ))
                })?
                .clone(),
        };
        let token = provider.token(SCOPES).await.map_err(token_error)?;
        Ok(token.as_str().to_owned())
    }
}

fn read_key_file(
    path: &Path,
    token_url: Option<&str>,
) -> Result<CustomServiceAccount, ProviderError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ProviderError::Configuration(format!("[gcp] credentials_file {}: {e}", path.display()))
    })?;
    let mut key: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        ProviderError::Configuration(format!("[gcp] credentials_file is not JSON: {e}"))
    })?;
    if let (Some(url), Some(object)) = (token_url, key.as_object_mut()) {
        object.insert("token_uri".into(), url.into());
    }
    CustomServiceAccount::from_json(&key.to_string()).map_err(|e| {
        ProviderError::Configuration(format!(
            "[gcp] credentials_file is not a service-account key: {e}"
        ))
    })
}

/// A refused grant needs an operator; anything else (connection refused, a broken answer)
/// is retried later. `gcp_auth` reports every non-2xx answer as one `Str` error, so a 5xx of
/// the token endpoint reads as a refusal here (the inbox retries `Configuration` anyway).
fn token_error(error: gcp_auth::Error) -> ProviderError {
    match error {
        gcp_auth::Error::Str(_) => ProviderError::Configuration(format!(
            "Google refused the service account's token request: {error}"
        )),
        other => ProviderError::retryable(format!("Google token endpoint unreachable: {other}")),
    }
}
