//! The account page: the signed-in user's tenant and what it holds, in words a buyer reads.

use std::collections::HashMap;

use askama::Template;
use axum::{
    extract::{Query, State},
    http::StatusCode,
};
use marketlink_core::{Entitlement, Subscription, SubscriptionStatus, VerificationMethod};

use super::Reply;
use crate::{
    AppState,
    extract::SignedIn,
    pages::{Branding, PageError, render},
};

struct SubscriptionRow {
    id: String,
    product: String,
    marketplace: String,
    plan: String,
    status: String,
    status_class: &'static str,
    /// Contract dimensions, trial end, term: one fact per line.
    details: Vec<String>,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    brand: Branding,
    csrf: String,
    email: String,
    /// The address is not shown to be the user's yet.
    unverified: bool,
    /// Verification links are mailed (`[email]`); else the vendor's team confirms.
    sends_mail: bool,
    tenant_name: String,
    notice: Option<String>,
    subscriptions: Vec<SubscriptionRow>,
    /// Where a buyer can subscribe, e.g. "AWS Marketplace or Microsoft's marketplace".
    marketplaces: String,
}

pub(crate) fn status_words(status: SubscriptionStatus) -> (&'static str, &'static str) {
    match status {
        SubscriptionStatus::Pending => ("Waiting for the marketplace to confirm", "wait"),
        SubscriptionStatus::Active => ("Active", "good"),
        SubscriptionStatus::Suspended => ("Suspended (payment issue)", "bad"),
        SubscriptionStatus::UnsubscribePending => ("Cancelling", "wait"),
        SubscriptionStatus::Cancelled => ("Cancelled", "bad"),
        SubscriptionStatus::Failed => ("Failed", "bad"),
    }
}

/// `GET /account`: the signed-in user's tenant and its subscriptions.
pub(super) async fn account(
    State(state): State<AppState>,
    SignedIn { user, browser }: SignedIn,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    let overview = state
        .engine
        .account_overview(user.tenant_id)
        .await
        .map_err(|e| PageError::internal(&e))?;
    let subscriptions = overview
        .subscriptions
        .iter()
        .map(|(s, entitlements)| subscription_row(&state, s, entitlements))
        .collect();
    let tenant = overview.tenant;
    let page = AccountPage {
        brand: state.settings.branding.clone(),
        csrf: browser.session.csrf.clone(),
        email: user.email,
        // The company names the account when the buyer gave one; else the person's name.
        tenant_name: tenant.company.unwrap_or(tenant.name),
        notice: notice(&query),
        unverified: user.email_verified.is_none(),
        sends_mail: state.engine.verification_method() == VerificationMethod::Link,
        subscriptions,
        marketplaces: state.engine.marketplace_names().join(" or "),
    };
    Ok((browser.save(&state), render(StatusCode::OK, &page)))
}

fn notice(query: &HashMap<String, String>) -> Option<String> {
    if query.contains_key("linked") {
        return Some("Your subscription is linked to this account.".into());
    }
    query
        .contains_key("sent")
        .then(|| "We are sending you a new verification link; it works for 24 hours.".into())
}

fn subscription_row(
    state: &AppState,
    s: &Subscription,
    entitlements: &[Entitlement],
) -> SubscriptionRow {
    let (status, status_class) = status_words(s.status);
    let rules = state
        .engine
        .marketplace_rules(s.external.marketplace.as_str());
    SubscriptionRow {
        id: s.id.to_string(),
        product: s
            .product_id
            .as_ref()
            .and_then(|p| state.engine.catalog.product(p))
            .map(|p| p.name.clone())
            .unwrap_or_else(|| s.external.product_code.clone()),
        marketplace: rules.display_name.into_owned(),
        plan: s
            .plan_id
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "—".into()),
        status: status.into(),
        status_class,
        details: overview_details(s, entitlements),
    }
}

/// What the buyer bought beyond the plan: contract dimensions (the plan has its own column; a
/// seat count may come both as an entitlement and as the quantity: each fact once), the end of
/// a free trial, and when the term renews or ends.
fn overview_details(s: &Subscription, entitlements: &[Entitlement]) -> Vec<String> {
    let mut details: Vec<String> = entitlements
        .iter()
        .filter(|e| e.dimension != "plan")
        .map(|e| {
            let until = e
                .expires_at
                .map(|at| format!(" until {}", human_date(at)))
                .unwrap_or_default();
            format!("{}: {}{until}", e.dimension.replace('_', " "), e.value)
        })
        .collect();
    if let Some(quantity) = s.quantity
        && !entitlements.iter().any(|e| e.dimension == "quantity")
    {
        details.push(format!("quantity: {quantity}"));
    }
    let end = term_end(s, entitlements).map(human_date);
    match (s.free_trial, end, s.status) {
        (true, Some(end), _) => details.push(format!("free trial until {end}")),
        (true, None, _) => details.push("free trial".into()),
        (
            false,
            Some(end),
            SubscriptionStatus::UnsubscribePending | SubscriptionStatus::Cancelled,
        ) => details.push(format!("ends {end}")),
        (false, Some(end), SubscriptionStatus::Active) => details.push(format!("renews {end}")),
        (false, _, _) => {}
    }
    details
}

/// When the subscription's term ends. A free trial on AWS carries no term: it ends when its
/// entitlements do, so the earliest entitlement expiry stands in.
pub(crate) fn term_end(
    s: &Subscription,
    entitlements: &[Entitlement],
) -> Option<time::OffsetDateTime> {
    s.term.as_ref().and_then(|t| t.end).or_else(|| {
        s.free_trial
            .then(|| entitlements.iter().filter_map(|e| e.expires_at).min())
            .flatten()
    })
}

/// A date as people read it, without a time or hyphens to break on: `20 Nov 2027`.
pub(crate) fn human_date(at: time::OffsetDateTime) -> String {
    at.format(time::macros::format_description!(
        "[day padding:none] [month repr:short] [year]"
    ))
    .unwrap_or_else(|_| at.date().to_string())
}
