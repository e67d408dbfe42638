//! The service account's OAuth access token (scope cloud-platform, gcp.md §3).
//!
//! - A key file: the JWT-bearer grant Google documents for service accounts, signed with
//!   `jsonwebtoken` (header `kid` = `private_key_id`, as Google's own client libraries send),
//!   posted over our `reqwest` client to the file's `token_uri` (or `[gcp] token_url`), with
//!   `iat`/`exp` and the cache's expiry from our `Clock`.
//! - Otherwise Application Default Credentials through `gcp_auth` (workload identity, the
//!   metadata server, `gcloud`), looked up on first use only, so building a provider never
//!   probes the metadata server.

use std::{path::Path, sync::Arc};

use gcp_auth::TokenProvider;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use marketlink_core::{Clock, ProviderError, Secret};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use time::{Duration, OffsetDateTime};
use tokio::sync::{Mutex, OnceCell};

use crate::body::{read_bounded, transport_error};

/// The only scope the Partner Procurement API takes; it covers Pub/Sub and Service Control.
const SCOPES: &[&str] = &["https://www.googleapis.com/auth/cloud-platform"];
/// A token is replaced this long before Google's expiry.
const REFRESH_MARGIN: Duration = Duration::minutes(5);

#[derive(Deserialize)]
struct KeyFile {
    client_email: String,
    private_key: Secret,
    #[serde(default)]
    private_key_id: Option<String>,
    token_uri: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Secret,
    expires_in: i64,
}

pub(crate) struct KeyFileSource {
    email: String,
    key_id: Option<String>,
    key: EncodingKey,
    token_uri: String,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    cached: Mutex<Option<(Secret, OffsetDateTime)>>,
}

pub(crate) enum Credentials {
    KeyFile(Box<KeyFileSource>),
    Adc(OnceCell<Arc<dyn TokenProvider>>),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::KeyFile(source) => f
                .debug_struct("KeyFile")
                .field("email", &source.email)
                .field("token_uri", &source.token_uri)
                .finish_non_exhaustive(),
            Self::Adc(_) => f.write_str("Adc"),
        }
    }
}

impl Credentials {
    pub(crate) fn new(
        key_file: Option<&Path>,
        token_url: Option<&str>,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ProviderError> {
        let Some(path) = key_file else {
            return Ok(Self::Adc(OnceCell::new()));
        };
        let config = |why: String| {
            ProviderError::Configuration(format!(
                "[gcp] credentials_file {}: {why}",
                path.display()
            ))
        };
        let text = std::fs::read_to_string(path).map_err(|e| config(e.to_string()))?;
        let file: KeyFile = serde_json::from_str(&text)
            .map_err(|e| config(format!("not a service-account key: {e}")))?;
        let key = EncodingKey::from_rsa_pem(file.private_key.expose().as_bytes())
            .map_err(|e| config(format!("private_key is not an RSA key: {e}")))?;
        Ok(Self::KeyFile(Box::new(KeyFileSource {
            email: file.client_email,
            key_id: file.private_key_id,
            key,
            token_uri: token_url.map_or(file.token_uri, str::to_owned),
            http,
            clock,
            cached: Mutex::new(None),
        })))
    }

    /// A bearer token, cached until shortly before it expires.
    pub(crate) async fn bearer(&self) -> Result<String, ProviderError> {
        match self {
            Self::KeyFile(source) => source.token().await,
            Self::Adc(cell) => {
                let provider = cell
                    .get_or_try_init(gcp_auth::provider)
                    .await
                    .map_err(|e| {
                        ProviderError::Configuration(format!(
                            "no Google credentials found (set [gcp] credentials_file or run with \
                         Application Default Credentials): {e}"
                        ))
                    })?;
                let token = provider.token(SCOPES).await.map_err(|e| {
                    ProviderError::retryable(format!(
                        "Application Default Credentials gave no token: {e}"
                    ))
                })?;
                Ok(token.as_str().to_owned())
            }
        }
    }
}

impl KeyFileSource {
    async fn token(&self) -> Result<String, ProviderError> {
        let mut cached = self.cached.lock().await;
        let now = self.clock.now();
        if let Some((token, expires)) = cached.as_ref()
            && now + REFRESH_MARGIN < *expires
        {
            return Ok(token.expose().to_owned());
        }
        let answer = self.grant(now).await?;
        let token = answer.access_token.expose().to_owned();
        *cached = Some((
            answer.access_token,
            now + Duration::seconds(answer.expires_in),
        ));
        Ok(token)
    }

    /// One JWT-bearer grant: an assertion valid for an hour from `now`.
    async fn grant(&self, now: OffsetDateTime) -> Result<TokenAnswer, ProviderError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        let claims = json!({
            "iss": self.email,
            "scope": SCOPES.join(" "),
            "aud": self.token_uri,
            "iat": now.unix_timestamp(),
            "exp": (now + Duration::hours(1)).unix_timestamp(),
        });
        let assertion = jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| {
            ProviderError::Configuration(format!("cannot sign the token request: {e}"))
        })?;
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ];
        let response = self
            .http
            .post(&self.token_uri)
            .form(&form)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let body = read_bounded(response).await?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| ProviderError::retryable(format!("unreadable token answer: {e}")));
        }
        let detail = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(ProviderError::retryable(format!(
                "token endpoint answered {status}: {detail}"
            )));
        }
        Err(ProviderError::Configuration(format!(
            "Google refused the service account's token request ({status}): {detail}"
        )))
    }
}
