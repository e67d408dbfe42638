//! `marketlink doctor` for Microsoft's marketplace: which credential, the Entra token, one harmless Fulfillment
//! API call, the buyer sign-in authority and the webhook signing keys, in plain words.

use marketlink_core::{Diagnosis, ProviderError};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::{AzureConfig, AzureProvider, credential::describe, model::SubscriptionPage};

const LISTING_DOC: &str = "docs/listing-on-microsoft.md";

/// Entra's answer to a refused token request, in plain words for the configured credential
/// (AADSTS codes from Microsoft's error reference).
fn token_problem(error: &ProviderError, config: &AzureConfig) -> String {
    let text = error.to_string();
    let (tenant_id, client_id) = (&config.tenant_id, &config.client_id);
    let has = |codes: &[&str]| codes.iter().any(|c| text.contains(c));
    let app_page = "Entra > App registrations > the app > Certificates & secrets";
    let reason = if has(&["AADSTS7000215", "AADSTS7000222"]) {
        format!(
            "the client secret of app {client_id} is wrong or expired: create a new one ({app_page}) and set azure.client_secret"
        )
    } else if has(&["AADSTS700027"]) {
        format!(
            "app {client_id} does not accept this certificate: upload its public part ({app_page} > Certificates) or point azure.credential.certificate at the registered one"
        )
    } else if has(&["AADSTS700024"]) {
        "the client assertion is outside its valid time range: check this machine's clock, and for workload identity that the token file is being refreshed".to_owned()
    } else if has(&[
        "AADSTS70021",
        "AADSTS700211",
        "AADSTS700212",
        "AADSTS700213",
    ]) {
        format!(
            "app {client_id} has no federated credential matching the token's issuer, subject and audience (api://AzureADTokenExchange): add one ({app_page} > Federated credentials)"
        )
    } else if has(&["AADSTS700016"]) {
        format!(
            "tenant {tenant_id} has no app {client_id}: check azure.client_id and azure.tenant_id"
        )
    } else if has(&["AADSTS90002", "invalid_tenant"]) {
        format!("Entra does not know tenant {tenant_id}: check azure.tenant_id")
    } else if has(&["invalid_client", "unauthorized_client"]) {
        format!(
            "Entra refused app {client_id} in tenant {tenant_id}: its {} is wrong or expired, or azure.client_id is not an app of that tenant",
            config.credential().kind()
        )
    } else if error.is_retryable() {
        "cannot reach Entra or the identity endpoint: check the network and azure.authority_host"
            .to_owned()
    } else {
        "the credential could not obtain a token".to_owned()
    };
    format!("{reason} ({text})")
}

impl AzureProvider {
    pub(crate) async fn run_diagnosis(&self) -> Vec<Diagnosis> {
        let config = &self.config;
        let mut out = vec![Diagnosis::ok("azure.credential", describe(config))];
        // A fresh token: a cached one would prove nothing about the current secret.
        self.api.tokens.clear().await;
        match self.api.tokens.token().await {
            Ok(_) => {
                out.push(Diagnosis::ok(
                    "azure.token",
                    format!(
                        "Entra issued a marketplace API token to app {} in tenant {} ({})",
                        config.client_id,
                        config.tenant_id,
                        config.credential().kind()
                    ),
                ));
                out.push(self.fulfillment_diagnosis().await);
            }
            Err(error) => {
                out.push(Diagnosis::failed(
                    "azure.token",
                    token_problem(&error, config),
                ));
                out.push(Diagnosis::warning(
                    "azure.fulfillment_api",
                    "not checked: no API token (see azure.token)",
                ));
            }
        }
        out.push(self.webhook_keys_diagnosis().await);
        if config.sign_in.is_some() {
            out.push(self.sign_in_diagnosis().await);
        }
        out
    }

    /// The first page of List Subscriptions: read-only, and proves the SaaS API accepts the
    /// token (service principal and offer configuration).
    async fn fulfillment_diagnosis(&self) -> Diagnosis {
        let check = "azure.fulfillment_api";
        let what = "list subscriptions";
        let reply = match self.api.url(&["saas", "subscriptions"]) {
            Ok(url) => self.api.send(Method::GET, url, None, &[], None, what).await,
            Err(e) => Err(e),
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => {
                return Diagnosis::failed(
                    check,
                    format!(
                        "cannot reach the SaaS Fulfillment API at {}: {e}",
                        self.config.api_base()
                    ),
                );
            }
        };
        if reply.status.is_success() {
            let count = if reply.body.iter().all(u8::is_ascii_whitespace) {
                Some(0)
            } else {
                reply
                    .parse::<SubscriptionPage>(what)
                    .ok()
                    .map(|p| p.subscriptions.len())
            };
            return match count {
                Some(n) => Diagnosis::ok(
                    check,
                    format!(
                        "the SaaS Fulfillment API accepted the token ({n} subscription(s) on the first page)"
                    ),
                ),
                None => Diagnosis::warning(
                    check,
                    format!(
                        "the SaaS Fulfillment API answered {} with a body marketlink does not understand: is azure.marketplace_api_base right?",
                        reply.status.as_u16()
                    ),
                ),
            };
        }
        let (code, message) = reply.error_detail();
        let said = format!(
            "HTTP {}{}: {message}",
            reply.status.as_u16(),
            code.map(|c| format!(" {c}")).unwrap_or_default()
        );
        let detail = match reply.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => format!(
                "the SaaS Fulfillment API refused the token of app {} ({said}). Usually the app has no service principal in tenant {}, or is not the Microsoft Entra application ID of the offer's technical configuration in Partner Center: see section 2 of {LISTING_DOC}",
                self.config.client_id, self.config.tenant_id
            ),
            StatusCode::NOT_FOUND => format!(
                "the SaaS Fulfillment API is not at {} ({said}): check azure.marketplace_api_base",
                self.config.api_base()
            ),
            _ => format!("the SaaS Fulfillment API failed ({said})"),
        };
        Diagnosis::failed(check, detail)
    }

    /// The keys webhook tokens are signed with: without them every webhook is refused.
    async fn webhook_keys_diagnosis(&self) -> Diagnosis {
        let check = "azure.webhook_keys";
        let jwks_url = match &self.config.jwks_url {
            Some(url) => url.clone(),
            None => {
                let discovery = self.config.discovery_url();
                match self.get_json(&discovery).await {
                    Ok(doc) => match doc.get("jwks_uri").and_then(Value::as_str) {
                        Some(uri) => uri.to_owned(),
                        None => {
                            return Diagnosis::failed(
                                check,
                                format!(
                                    "{discovery} names no jwks_uri: check azure.authority_host and azure.tenant_id"
                                ),
                            );
                        }
                    },
                    Err(e) => {
                        return Diagnosis::failed(
                            check,
                            format!(
                                "cannot read the OpenID configuration of tenant {} ({e}): webhooks cannot be verified; check azure.authority_host and azure.tenant_id",
                                self.config.tenant_id
                            ),
                        );
                    }
                }
            }
        };
        match self.get_json(&jwks_url).await {
            Ok(jwks) => {
                let keys = jwks
                    .get("keys")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                if keys == 0 {
                    Diagnosis::failed(
                        check,
                        format!("{jwks_url} lists no signing keys: no webhook can be verified"),
                    )
                } else {
                    Diagnosis::ok(
                        check,
                        format!(
                            "{keys} webhook signing key(s) at {jwks_url}; tokens must have aud {} and one of the issuers {}",
                            self.config.expected_webhook_audience(),
                            self.config.accepted_webhook_issuers().join(", ")
                        ),
                    )
                }
            }
            Err(e) => Diagnosis::failed(
                check,
                format!(
                    "cannot download the webhook signing keys ({e}): every webhook would be refused"
                ),
            ),
        }
    }

    /// The buyer sign-in authority's discovery document (read once at start-up: without it
    /// `marketlink serve` does not start).
    async fn sign_in_diagnosis(&self) -> Diagnosis {
        let check = "azure.sign_in";
        let authority = self
            .config
            .sign_in
            .as_ref()
            .and_then(|s| s.authority.clone())
            .unwrap_or_else(|| {
                format!(
                    "{}/common/v2.0",
                    self.config.authority_host.trim_end_matches('/')
                )
            });
        let url = format!(
            "{}/.well-known/openid-configuration",
            authority.trim_end_matches('/')
        );
        match self.get_json(&url).await {
            Ok(doc) if doc.get("authorization_endpoint").is_some() => Diagnosis::ok(
                check,
                format!("buyer sign-in authority {authority} is reachable"),
            ),
            Ok(_) => Diagnosis::failed(
                check,
                format!("{url} is not an OpenID configuration: check [azure.sign_in] authority"),
            ),
            Err(e) => Diagnosis::failed(
                check,
                format!(
                    "cannot reach the buyer sign-in authority ({e}): marketlink serve will not start; check [azure.sign_in] authority and azure.authority_host"
                ),
            ),
        }
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let response = self
            .api
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("{url}: HTTP {}", status.as_u16()));
        }
        response
            .json::<Value>()
            .await
            .map_err(|e| format!("{url}: not JSON ({e})"))
    }
}
