//! SaaS Fulfillment API v2, subscription calls: Resolve, Activate, Get/List subscriptions,
//! listAvailablePlans, change plan or quantity (PATCH) and Unsubscribe (DELETE). Operation calls
//! are in `operations`.

use marketlink_core::{
    AvailablePlan as CoreAvailablePlan, ChangeOutcome, Entitlement, EntitlementValue, ExternalRef,
    LandingToken, PlanId, ProviderError, ResolvedPurchase,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    AzureProvider,
    http::{Reply, status_error},
    model::{
        AvailablePlan, PlanList, ResolveResponse, SaasStatus, SaasSubscription, SubscriptionPage,
    },
};

impl AzureProvider {
    /// Reads a subscription (`GET /saas/subscriptions/{id}`).
    pub async fn subscription(&self, id: &str) -> Result<SaasSubscription, ProviderError> {
        let url = self.api.url(&["saas", "subscriptions", id])?;
        let what = "get subscription";
        self.api
            .send_ok(Method::GET, url, None, what)
            .await?
            .parse(what)
    }

    /// Every subscription of the publisher, following `@nextLink` pages (reconciliation).
    pub async fn list_subscriptions(&self) -> Result<Vec<SaasSubscription>, ProviderError> {
        let what = "list subscriptions";
        let mut url = self.api.url(&["saas", "subscriptions"])?;
        let mut out = Vec::new();
        // A bound against a service that keeps handing out the same link.
        for _ in 0..10_000 {
            let reply = self
                .api
                .send_ok(Method::GET, url.clone(), None, what)
                .await?;
            if reply.body.iter().all(u8::is_ascii_whitespace) {
                break;
            }
            let page: SubscriptionPage = reply.parse(what)?;
            out.extend(page.subscriptions);
            match (page.next_link, page.continuation_token) {
                (Some(link), _) if !link.is_empty() => {
                    let next = self.api.same_origin(&link)?;
                    if next == url {
                        break;
                    }
                    url = next;
                }
                (_, Some(token)) if !token.is_empty() => {
                    let mut next = self.api.url(&["saas", "subscriptions"])?;
                    next.query_pairs_mut()
                        .append_pair("continuationToken", &token);
                    url = next;
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// The plans a subscription may move to (`listAvailablePlans`).
    pub async fn available_plans(
        &self,
        subscription: &ExternalRef,
    ) -> Result<Vec<AvailablePlan>, ProviderError> {
        let url = self.api.url(&[
            "saas",
            "subscriptions",
            &subscription.external_id,
            "listAvailablePlans",
        ])?;
        let what = "list available plans";
        let reply = self.api.send_ok(Method::GET, url, None, what).await?;
        if reply.body.iter().all(u8::is_ascii_whitespace) {
            // The docs: an empty body for an unknown subscription.
            return Ok(Vec::new());
        }
        Ok(reply.parse::<PlanList>(what)?.plans)
    }

    /// Resolve (`POST /saas/subscriptions/resolve`): the landing token for the purchase.
    pub(crate) async fn resolve_token(
        &self,
        token: &LandingToken,
    ) -> Result<ResolvedPurchase, ProviderError> {
        let raw = normalize_landing_token(&token.token);
        if raw.is_empty() {
            return Err(ProviderError::InvalidToken("the token is empty".into()));
        }
        let url = self.api.url(&["saas", "subscriptions", "resolve"])?;
        let what = "resolve";
        // The buyer waits on the landing page and nothing retries later: retry here.
        let body: ResolveResponse = self
            .retry
            .run(what, || async {
                let reply = self
                    .api
                    .send(
                        Method::POST,
                        url.clone(),
                        None,
                        &[("x-ms-marketplace-token", raw.as_str())],
                        None,
                        what,
                    )
                    .await?;
                if !reply.status.is_success() {
                    return Err(resolve_error(&reply));
                }
                reply.parse(what)
            })
            .await?;
        let mut sub = body.subscription.unwrap_or_default();
        // The top-level fields win for what they carry; the nested subscription has the rest.
        if let Some(id) = body.id {
            sub.id = id;
        }
        if let Some(offer) = body.offer_id {
            sub.offer_id = offer;
        }
        if body.plan_id.is_some() {
            sub.plan_id = body.plan_id;
        }
        if body.quantity.is_some() {
            sub.quantity = body.quantity;
        }
        if sub.id.is_empty() {
            return Err(ProviderError::retryable(
                "resolve: the response names no subscription id",
            ));
        }
        Ok(ResolvedPurchase {
            subscription: sub.external_ref(),
            plan_id: sub.plan_id.clone().map(PlanId::new),
            quantity: sub.quantity,
            free_trial: sub.is_free_trial,
            term: sub.term(),
            display_name: body.subscription_name.or_else(|| sub.name.clone()),
            buyer_email: sub.beneficiary.email_id.clone(),
            aliases: Vec::new(),
            parties: sub.parties(),
        })
    }

    /// Activate (`POST .../activate`) with the given plan, or the subscription's own.
    pub(crate) async fn activate_subscription(
        &self,
        subscription: &ExternalRef,
        plan: Option<&PlanId>,
        quantity: Option<u32>,
    ) -> Result<(), ProviderError> {
        let (plan_id, quantity) = match plan {
            Some(plan) => (plan.as_str().to_owned(), quantity),
            None => {
                let current = self.subscription(&subscription.external_id).await?;
                let plan = current.plan_id.ok_or_else(|| ProviderError::Rejected {
                    code: "no_plan".into(),
                    message: "the subscription has no plan to activate".into(),
                })?;
                (plan, quantity.or(current.quantity))
            }
        };
        let mut body = json!({ "planId": plan_id });
        if let (Some(q), Some(obj)) = (quantity, body.as_object_mut()) {
            obj.insert("quantity".into(), json!(q));
        }
        let url = self.api.url(&[
            "saas",
            "subscriptions",
            &subscription.external_id,
            "activate",
        ])?;
        let what = "activate";
        let reply = self
            .api
            .send(Method::POST, url, Some(&body), &[], None, what)
            .await?;
        if reply.status.is_success() {
            return Ok(());
        }
        if reply.status == StatusCode::BAD_REQUEST {
            // A second activate is a 400 ("already Subscribed"): the outbox may resend after a
            // crash, so check the status and treat an active subscription as done.
            let current = self.subscription(&subscription.external_id).await?;
            if matches!(
                current.status(),
                SaasStatus::Subscribed | SaasStatus::Suspended
            ) {
                return Ok(());
            }
        }
        Err(reply.into_error(what))
    }

    pub(crate) async fn request_plan_change(
        &self,
        subscription: &ExternalRef,
        plan: &PlanId,
    ) -> Result<ChangeOutcome, ProviderError> {
        self.update(
            subscription,
            json!({ "planId": plan.as_str() }),
            "change plan",
        )
        .await
    }

    pub(crate) async fn request_quantity_change(
        &self,
        subscription: &ExternalRef,
        quantity: u32,
    ) -> Result<ChangeOutcome, ProviderError> {
        self.update(
            subscription,
            json!({ "quantity": quantity }),
            "change quantity",
        )
        .await
    }

    /// PATCH on the subscription: 202 + `Operation-Location` → the operation id.
    async fn update(
        &self,
        subscription: &ExternalRef,
        body: Value,
        what: &str,
    ) -> Result<ChangeOutcome, ProviderError> {
        let url = self
            .api
            .url(&["saas", "subscriptions", &subscription.external_id])?;
        let reply = self
            .api
            .send(Method::PATCH, url, Some(&body), &[], None, what)
            .await?;
        self.operation_outcome(reply, what)
    }

    /// Unsubscribe (`DELETE /saas/subscriptions/{id}`).
    pub(crate) async fn delete_subscription(
        &self,
        subscription: &ExternalRef,
    ) -> Result<ChangeOutcome, ProviderError> {
        let url = self
            .api
            .url(&["saas", "subscriptions", &subscription.external_id])?;
        let what = "cancel";
        let reply = self
            .api
            .send(Method::DELETE, url, None, &[], None, what)
            .await?;
        self.operation_outcome(reply, what)
    }

    /// The plan and quantity of the subscription as entitlements, ending with its term.
    pub(crate) async fn read_entitlements(
        &self,
        subscription: &ExternalRef,
    ) -> Result<Vec<Entitlement>, ProviderError> {
        let sub = self.subscription(&subscription.external_id).await?;
        let expires_at = sub.term().and_then(|t| t.end);
        let mut out = Vec::new();
        if let Some(plan) = &sub.plan_id {
            out.push(Entitlement {
                dimension: "plan".into(),
                value: EntitlementValue::String(plan.clone()),
                expires_at,
            });
        }
        if let Some(quantity) = sub.quantity {
            out.push(Entitlement {
                dimension: "quantity".into(),
                value: EntitlementValue::Integer(i64::from(quantity)),
                expires_at,
            });
        }
        Ok(out)
    }

    /// The plans a buyer may be moved to, those still on sale.
    pub(crate) async fn offered_plans(
        &self,
        subscription: &ExternalRef,
    ) -> Result<Vec<CoreAvailablePlan>, ProviderError> {
        Ok(AzureProvider::available_plans(self, subscription)
            .await?
            .into_iter()
            .filter(|plan| !plan.is_stop_sell)
            .map(|plan| CoreAvailablePlan {
                plan_id: PlanId::new(plan.plan_id),
                display_name: plan.display_name,
                per_seat: plan.is_price_per_seat,
            })
            .collect())
    }
}

/// Maps an unsuccessful Resolve.
fn resolve_error(reply: &Reply) -> ProviderError {
    let (code, message) = reply.error_detail();
    let detail = match &code {
        Some(code) => format!("{code}: {message}"),
        None => message.clone(),
    };
    match reply.status {
        // Microsoft answers 400 for a missing, malformed, invalid or expired token alike (the
        // sandbox: "invalid or expired"). Only a message that speaks of expiry and not of
        // invalidity is taken as ExpiredToken; the buyer is told the same either way (reopen
        // the page from the Azure portal).
        StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => {
            let lower = message.to_ascii_lowercase();
            if lower.contains("expired") && !lower.contains("invalid") {
                ProviderError::ExpiredToken(detail)
            } else {
                ProviderError::InvalidToken(detail)
            }
        }
        _ => status_error("resolve", reply),
    }
}

/// A landing token as the buyer's browser brought it, after the web layer decoded the query
/// once (form decoding, where `+` means a space). Microsoft's landing URL carries the token
/// URL-encoded and Resolve wants it URL-decoded (OpenAPI saasapi.v2.json, `x-ms-marketplace-token`:
/// "The URL decodes the token value from the browser before using it"; `azure-details.md` §4:
/// `ab%2Bcd%2Fef` is sent as `ab+cd/ef`). Two ways a link goes wrong:
/// - it arrives un-encoded (pasted, rewritten by a mailer): each base64 `+` became a space.
///   Tokens hold no spaces, so every space is a `+` again (before trimming: a trailing `+` is
///   not whitespace to lose);
/// - it was encoded twice (some proxies and e-mail links): `%XX` escapes remain, decoded once
///   more.
pub fn normalize_landing_token(token: &str) -> String {
    let token = token
        .trim_matches(|c: char| c.is_whitespace() && c != ' ')
        .replace(' ', "+");
    if token.contains('%') {
        percent_encoding::percent_decode_str(&token)
            .decode_utf8()
            .map(|t| t.into_owned())
            .unwrap_or(token)
    } else {
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn landing_tokens_are_decoded_once() {
        assert_eq!(normalize_landing_token("ab%2Bcd%2Fef%3D"), "ab+cd/ef=");
        assert_eq!(normalize_landing_token("ab+cd/ef="), "ab+cd/ef=");
    }

    #[test]
    fn spaces_are_the_plus_signs_of_an_unencoded_link() {
        assert_eq!(normalize_landing_token("ab cd/ef="), "ab+cd/ef=");
        assert_eq!(normalize_landing_token("abcd ef "), "abcd+ef+");
        assert_eq!(normalize_landing_token("\tabcd ef\n"), "abcd+ef");
        assert_eq!(normalize_landing_token("ab%2Bcd ef"), "ab+cd+ef");
    }
}
