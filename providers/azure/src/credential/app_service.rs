//! A managed identity at a configured App Service identity endpoint. azure_identity 1.0 finds
//! that endpoint only in the process environment (`IDENTITY_ENDPOINT`, `IDENTITY_HEADER`; its
//! override is test-only), which a configuration file cannot set; this is the same request
//! (App Service "managed identity" REST protocol: `GET {endpoint}?resource=...&
//! api-version=2019-08-01`, header `X-IDENTITY-HEADER`, answer `{access_token, expires_on}` with
//! `expires_on` in epoch seconds as a string), behind the same `TokenCredential` trait.

use azure_core::{
    credentials::{AccessToken, TokenCredential, TokenRequestOptions},
    error::{Error, ErrorKind},
    http::StatusCode,
    time::OffsetDateTime,
};
use marketlink_core::Secret;
use serde::Deserialize;

pub(super) const API_VERSION: &str = "2019-08-01";

#[derive(Debug)]
pub(super) struct AppServiceIdentity {
    pub http: reqwest::Client,
    pub endpoint: String,
    pub identity_header: Secret,
    pub client_id: Option<String>,
}

#[derive(Deserialize)]
struct MsiToken {
    access_token: String,
    expires_on: ExpiresOn,
}

/// A string on App Service, a number from some hosts.
#[derive(Deserialize)]
#[serde(untagged)]
enum ExpiresOn {
    Number(i64),
    Text(String),
}

#[async_trait::async_trait]
impl TokenCredential for AppServiceIdentity {
    async fn get_token(
        &self,
        scopes: &[&str],
        _: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let [scope] = scopes else {
            return Err(Error::with_message(
                ErrorKind::Credential,
                "a managed identity token is for exactly one scope",
            ));
        };
        let resource = scope.strip_suffix("/.default").unwrap_or(scope);
        let mut query = vec![("api-version", API_VERSION), ("resource", resource)];
        if let Some(id) = &self.client_id {
            query.push(("client_id", id));
        }
        let response = self
            .http
            .get(&self.endpoint)
            .query(&query)
            .header("X-IDENTITY-HEADER", self.identity_header.expose())
            .send()
            .await
            .map_err(|e| {
                let kind = if e.is_connect() {
                    ErrorKind::Connection
                } else {
                    ErrorKind::Io
                };
                Error::with_error(kind, e, "calling the managed identity endpoint")
            })?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| Error::with_error(ErrorKind::Io, e, "reading the identity endpoint"))?;
        if !(200..300).contains(&status) {
            return Err(Error::with_message(
                ErrorKind::HttpResponse {
                    status: StatusCode::from(status),
                    error_code: None,
                    raw_response: None,
                },
                format!(
                    "the managed identity endpoint answered HTTP {status}: {}",
                    String::from_utf8_lossy(&body)
                        .chars()
                        .take(300)
                        .collect::<String>()
                ),
            ));
        }
        let token: MsiToken = serde_json::from_slice(&body).map_err(|e| {
            Error::with_error(
                ErrorKind::DataConversion,
                e,
                "the identity endpoint's answer",
            )
        })?;
        let expires_on = match token.expires_on {
            ExpiresOn::Number(n) => n,
            ExpiresOn::Text(t) => t.trim().parse().map_err(|e| {
                Error::with_error(ErrorKind::DataConversion, e, "expires_on is not a number")
            })?,
        };
        let expires_on = OffsetDateTime::from_unix_timestamp(expires_on).map_err(|e| {
            Error::with_error(ErrorKind::DataConversion, e, "expires_on is out of range")
        })?;
        Ok(AccessToken::new(token.access_token, expires_on))
    }
}
