//! The authenticated Fulfillment/Metering API client: URLs, bearer token (retried once with a
//! fresh token on 401 or 403), request ids.

use std::{sync::Arc, time::Duration};

use marketlink_core::ProviderError;
use reqwest::Method;
use serde_json::Value;
use url::Url;

use crate::{
    config::AzureConfig,
    http::{Reply, transport_error},
    token::TokenSource,
};

pub(crate) const API_VERSION: &str = "2018-08-31";

pub(crate) struct ApiClient {
    pub http: reqwest::Client,
    pub config: Arc<AzureConfig>,
    pub tokens: TokenSource,
}

impl ApiClient {
    /// `{api_base}/{segments...}?api-version=2018-08-31`, each segment percent-encoded.
    pub fn url(&self, segments: &[&str]) -> Result<Url, ProviderError> {
        let mut url = Url::parse(self.config.api_base()).map_err(|e| {
            ProviderError::Configuration(format!("marketplace_api_base is not a URL: {e}"))
        })?;
        url.path_segments_mut()
            .map_err(|()| {
                ProviderError::Configuration("marketplace_api_base cannot be a base URL".into())
            })?
            .pop_if_empty()
            .extend(segments);
        url.query_pairs_mut()
            .append_pair("api-version", API_VERSION);
        Ok(url)
    }

    /// A URL the API handed us (`Operation-Location`, `@nextLink`): only followed when it is on
    /// the API's own origin, so our bearer token never goes elsewhere.
    pub fn same_origin(&self, link: &str) -> Result<Url, ProviderError> {
        let base = Url::parse(self.config.api_base()).map_err(|e| {
            ProviderError::Configuration(format!("marketplace_api_base is not a URL: {e}"))
        })?;
        let url = base.join(link).map_err(|e| {
            ProviderError::retryable(format!("the marketplace returned a bad link {link}: {e}"))
        })?;
        if url.origin() != base.origin() {
            return Err(ProviderError::Rejected {
                code: "foreign_link".into(),
                message: format!("the marketplace returned a link to another host: {url}"),
            });
        }
        Ok(url)
    }

    /// Sends a call with our token; on 401 or 403 fetches a new token and tries once more.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        headers: &[(&str, &str)],
        timeout: Option<Duration>,
        what: &str,
    ) -> Result<Reply, ProviderError> {
        let mut retried = false;
        loop {
            let token = self.tokens.token().await?;
            let request_id = uuid::Uuid::new_v4().to_string();
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.expose())
                .header("x-ms-requestid", &request_id)
                .header("x-ms-correlationid", &request_id);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            if let Some(body) = body {
                request = request.json(body);
            } else if method == Method::POST || method == Method::PATCH {
                request = request.header("content-type", "application/json");
            }
            if let Some(timeout) = timeout {
                request = request.timeout(timeout);
            }
            let response = request
                .send()
                .await
                .map_err(|e| transport_error(what, &e))?;
            let reply = Reply::read(response, what).await?;
            tracing::debug!(%method, path = url.path(), status = reply.status.as_u16(), %request_id, "marketplace API call");
            if is_token_refusal(reply.status) && !retried {
                // Microsoft answers 403 (documented) or 401 (seen) to a missing, invalid or
                // expired token alike: a token our cache still thinks valid may be expired by
                // Microsoft's clock or revoked. Drop it and try once with a fresh one; a second
                // refusal is the app's configuration (`status_error`). A refused call was not
                // processed, so repeating a POST or PATCH is safe.
                retried = true;
                tracing::info!(
                    status = reply.status.as_u16(),
                    path = url.path(),
                    "the marketplace refused our API token; retrying once with a new one"
                );
                self.tokens.invalidate(&token).await;
                continue;
            }
            return Ok(reply);
        }
    }

    /// [`Self::send`], then maps any non-2xx with the generic mapping.
    pub async fn send_ok(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Reply, ProviderError> {
        let reply = self.send(method, url, body, &[], None, what).await?;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(reply.into_error(what))
        }
    }
}

/// 401 or 403: how the marketplace APIs refuse a bearer token.
fn is_token_refusal(status: reqwest::StatusCode) -> bool {
    matches!(
        status,
        reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN
    )
}
