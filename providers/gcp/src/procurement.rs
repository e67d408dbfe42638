//! Partner Procurement API v1 calls (gcp.md §3, discovery doc S8). Every mutating call
//! returns `{}`; approving in the wrong state is a 400 (S15), so each approval re-reads the
//! resource first and a repeat is a success.

use marketlink_core::ProviderError;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    http::Api,
    model::{Account, Entitlement},
};

pub(crate) struct Procurement<'a> {
    pub(crate) api: &'a Api,
    pub(crate) base: &'a str,
    pub(crate) provider_id: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntitlementPage {
    #[serde(default)]
    entitlements: Vec<Entitlement>,
    #[serde(default)]
    next_page_token: String,
}

fn decode<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T, ProviderError> {
    serde_json::from_value(value)
        .map_err(|e| ProviderError::retryable(format!("unreadable {what}: {e}")))
}

/// An id as one path segment (ids are Google's, but never trusted into a path unescaped).
fn segment(id: &str) -> String {
    utf8_percent_encode(id, NON_ALPHANUMERIC).to_string()
}

impl Procurement<'_> {
    fn url(&self, rest: &str) -> String {
        format!(
            "{}/v1/providers/{}/{rest}",
            self.base.trim_end_matches('/'),
            segment(self.provider_id)
        )
    }

    pub(crate) async fn account(&self, id: &str) -> Result<Account, ProviderError> {
        let url = self.url(&format!("accounts/{}", segment(id)));
        decode(self.api.call(Method::GET, &url, None).await?, "account")
    }

    pub(crate) async fn entitlement(&self, id: &str) -> Result<Entitlement, ProviderError> {
        let url = self.url(&format!("entitlements/{}", segment(id)));
        decode(self.api.call(Method::GET, &url, None).await?, "entitlement")
    }

    /// Every entitlement matching `filter` (Google's list filter grammar), all pages.
    pub(crate) async fn entitlements(
        &self,
        filter: Option<&str>,
    ) -> Result<Vec<Entitlement>, ProviderError> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let mut url = url::Url::parse(&self.url("entitlements"))
                .map_err(|e| ProviderError::Configuration(format!("[gcp] procurement_url: {e}")))?;
            {
                let mut query = url.query_pairs_mut();
                query.append_pair("pageSize", "200");
                if let Some(filter) = filter {
                    query.append_pair("filter", filter);
                }
                if !page_token.is_empty() {
                    query.append_pair("pageToken", &page_token);
                }
            }
            let page: EntitlementPage = decode(
                self.api.call(Method::GET, url.as_str(), None).await?,
                "entitlement list",
            )?;
            all.extend(page.entitlements);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }

    /// One page of one entitlement: a harmless read for `diagnose`.
    pub(crate) async fn probe(&self) -> Result<(), ProviderError> {
        let url = format!("{}?pageSize=1", self.url("entitlements"));
        self.api.call(Method::GET, &url, None).await.map(|_| ())
    }

    /// Grants the `signup` approval (S2, codelab step 2), unless it already is.
    pub(crate) async fn approve_account(&self, id: &str) -> Result<(), ProviderError> {
        if self.account(id).await?.signup_approved() {
            return Ok(());
        }
        let url = self.url(&format!("accounts/{}:approve", segment(id)));
        let body = json!({"approvalName": "signup"});
        match self.api.call(Method::POST, &url, Some(&body)).await {
            Ok(_) => Ok(()),
            Err(ProviderError::Rejected { .. }) if self.account(id).await?.signup_approved() => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Posts `:verb` on an entitlement with `body`.
    pub(crate) async fn entitlement_action(
        &self,
        id: &str,
        verb: &str,
        body: &Value,
    ) -> Result<(), ProviderError> {
        let url = self.url(&format!("entitlements/{}:{verb}", segment(id)));
        self.api
            .call(Method::POST, &url, Some(body))
            .await
            .map(|_| ())
    }
}
