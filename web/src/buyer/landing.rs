//! Landing from a marketplace: the set-up token is resolved at once (after the marketplace's
//! own sign-in where it asks for one) and the purchase waits in the session for sign-up.

use std::collections::HashMap;

use crate::session::SavedSession;
use axum::{
    extract::{Path, Query, RawForm, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use marketlink_core::{
    BuyerIdentity, BuyerSignIn, LandingToken, Marketplace, MarketplaceRules, ProviderError,
    ResolvedPurchase, SignInMismatch,
};
use marketlink_engine::LandingError;
use subtle::ConstantTimeEq;

use super::Reply;
use crate::{
    AppState,
    extract::Browser,
    pages::PageError,
    session::{PendingSignIn, SIGN_IN_LIFETIME, SignedInBuyer},
};

/// `GET|POST /{marketplace}/landing`: the URL registered with the marketplace.
pub(super) async fn landing(
    State(state): State<AppState>,
    Path(marketplace): Path<String>,
    method: Method,
    browser: Browser,
    RawForm(raw): RawForm,
) -> Reply {
    let fields = landing_fields(&raw);
    let token = state
        .engine
        .landing_token(&marketplace, &fields, method == Method::POST)
        .map_err(|error| landing_page(&error, &state.engine.marketplace_rules(&marketplace)))?;
    let signed_in = browser
        .session
        .buyer
        .as_ref()
        .is_some_and(|b| b.marketplace.as_str() == marketplace);
    match state.engine.buyer_sign_in(&marketplace) {
        Some(sign_in) if !signed_in => {
            let marketplace =
                Marketplace::parse(&marketplace).map_err(|e| PageError::internal(&e))?;
            Ok(start_sign_in(
                &state,
                browser,
                marketplace,
                &*sign_in,
                token,
            ))
        }
        _ => resolve_and_continue(&state, &marketplace, &token, browser).await,
    }
}

/// The fields of a landing request: RawForm is the query string of a GET and the body of a
/// POST, both `application/x-www-form-urlencoded`.
pub(crate) fn landing_fields(raw: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(raw).into_owned().collect()
}

/// Sends the buyer to the marketplace's identity provider; the token waits in the session.
fn start_sign_in(
    state: &AppState,
    mut browser: Browser,
    marketplace: Marketplace,
    sign_in: &dyn BuyerSignIn,
    token: LandingToken,
) -> (SavedSession, Response) {
    let start = sign_in.begin();
    browser.session.sign_in = Some(PendingSignIn {
        marketplace,
        token: token.token,
        state: start.state,
        nonce: start.nonce,
        pkce_verifier: start.pkce_verifier,
        expires_at: (state.now() + SIGN_IN_LIFETIME).unix_timestamp(),
    });
    (
        browser.save(state),
        Redirect::to(&start.authorize_url).into_response(),
    )
}

/// `GET /{marketplace}/signin/callback`: back from the marketplace's identity provider.
pub(super) async fn sign_in_callback(
    State(state): State<AppState>,
    Path(marketplace): Path<String>,
    mut browser: Browser,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    let rules = state.engine.marketplace_rules(&marketplace);
    let expired = || {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "Your sign-in could not be completed",
            "The sign-in took too long or was started in another browser window.",
        )
        .step(rules.return_step.clone())
    };
    let Some(pending) = browser.session.sign_in.take() else {
        return Err(expired());
    };
    let state_ok = query
        .get("state")
        .is_some_and(|s| bool::from(s.as_bytes().ct_eq(pending.state.as_bytes())));
    if !state_ok || pending.marketplace.as_str() != marketplace {
        return Ok((browser.save(&state), expired().into_response()));
    }
    if let Some(error) = query.get("error") {
        let description = query.get("error_description").map_or("", String::as_str);
        tracing::info!(%marketplace, %error, %description, "buyer sign-in refused by the identity provider");
        let page = identity_provider_error(error, description).step(rules.return_step.clone());
        return Ok((browser.save(&state), page.into_response()));
    }
    let (Some(code), Some(sign_in)) = (query.get("code"), state.engine.buyer_sign_in(&marketplace))
    else {
        return Ok((browser.save(&state), expired().into_response()));
    };
    match sign_in
        .complete(code, &pending.pkce_verifier, &pending.nonce)
        .await
    {
        Ok(identity) => {
            // Signed in with the marketplace: the session changes hands.
            browser.changes_hands();
            browser.session.buyer = Some(SignedInBuyer {
                marketplace: pending.marketplace.clone(),
                identity,
            });
            let token = LandingToken {
                token: pending.token,
            };
            resolve_and_continue(&state, &marketplace, &token, browser).await
        }
        Err(ProviderError::Rejected { message, .. }) => {
            tracing::info!(%marketplace, %message, "buyer sign-in not admitted");
            let page = PageError::new(
                StatusCode::FORBIDDEN,
                "This account cannot set up the subscription",
                format!("You signed in, but {message}."),
            )
            .step("Sign in again with the work or school account the subscription was bought with.")
            .step(rules.return_step.clone());
            Ok((browser.save(&state), page.into_response()))
        }
        Err(error) => {
            tracing::warn!(%marketplace, %error, "buyer sign-in failed");
            let page = PageError::new(
                StatusCode::UNAUTHORIZED,
                "We could not verify your sign-in",
                "Your identity provider's answer did not pass our checks.",
            )
            .step(rules.return_step.clone());
            Ok((browser.save(&state), page.into_response()))
        }
    }
}

/// The identity provider sent the buyer back with an OAuth `error` instead of a code: say what
/// it said and what to do. Entra puts its AADSTS code and text in `error_description`
/// (learn.microsoft.com/entra/identity-platform/reference-error-codes); `access_denied` with
/// AADSTS65004 is a buyer who declined consent or cancelled.
fn identity_provider_error(error: &str, description: &str) -> PageError {
    // The first line is the message; Entra appends trace and correlation ids on later lines.
    let said = description.lines().next().unwrap_or_default().trim();
    let said = if said.is_empty() { error } else { said };
    // Quoted from the URL: bounded, and escaped by the template.
    let said: String = said.chars().take(300).collect();
    let (title, hint) = if error == "access_denied" {
        (
            "You did not finish signing in",
            "The sign-in was cancelled or the permissions we ask for (your name and e-mail address) were declined.",
        )
    } else {
        (
            "Your sign-in was refused",
            "Your organisation's sign-in service did not let you into this application.",
        )
    };
    let what_to_do = if matches!(
        error,
        "access_denied" | "interaction_required" | "login_required"
    ) {
        "Open the set-up link again and complete the sign-in, accepting the permissions asked for."
    } else {
        "Ask your IT administrator whether your organisation allows this application, quoting the message above; or contact us."
    };
    PageError::new(
        StatusCode::UNAUTHORIZED,
        title,
        format!("{hint} The sign-in service said: \"{said}\" ({error})."),
    )
    .step(what_to_do)
}

/// Resolves the token, then holds the purchase in the session and continues to sign-up.
async fn resolve_and_continue(
    state: &AppState,
    marketplace: &str,
    token: &LandingToken,
    mut browser: Browser,
) -> Reply {
    match state.engine.resolve_landing(marketplace, token).await {
        Ok(mut purchase) => {
            let stranger = browser
                .session
                .buyer
                .as_ref()
                .filter(|b| b.marketplace.as_str() == marketplace)
                .filter(|b| !purchase.admits(&b.identity))
                .map(|b| b.identity.clone());
            if let Some(identity) = stranger {
                let page = mismatch_page(state, marketplace, &identity, &purchase).await?;
                return Ok((browser.save(state), page.into_response()));
            }
            if purchase.buyer_email.is_none() {
                purchase.buyer_email = browser
                    .session
                    .buyer
                    .as_ref()
                    .and_then(|b| b.identity.email.clone());
            }
            browser.session.hold_purchase(purchase, state.now());
            Ok((browser.save(state), Redirect::to("/signup").into_response()))
        }
        Err(error) => {
            let page = landing_page(&error, &state.engine.marketplace_rules(marketplace));
            Ok((browser.save(state), page.into_response()))
        }
    }
}

/// The buyer signed in as neither the purchaser nor the beneficiary: refused, naming who may
/// set the subscription up, or (by the vendor's choice) recorded for an operator to approve.
/// The purchase is not held in the session either way, so the landing link alone claims nothing.
async fn mismatch_page(
    state: &AppState,
    marketplace: &str,
    identity: &BuyerIdentity,
    purchase: &ResolvedPurchase,
) -> Result<PageError, PageError> {
    let policy = state
        .engine
        .buyer_sign_in(marketplace)
        .map(|s| s.on_mismatch())
        .unwrap_or_default();
    let rules = state.engine.marketplace_rules(marketplace);
    tracing::warn!(%marketplace, subject = %identity.subject, ?policy, "sign-in does not match the purchase");
    if policy == SignInMismatch::OperatorApproval {
        state
            .engine
            .request_sign_in_approval(identity, purchase)
            .await
            .map_err(|e| PageError::internal(&e))?;
        return Ok(PageError::new(
            StatusCode::ACCEPTED,
            "Your request was sent for approval",
            "You are not the person who bought this subscription or the one it was bought for, so our team must approve you before you can set it up. We will be in touch.",
        ));
    }
    let who: Vec<String> = purchase
        .parties
        .iter()
        .map(|p| match &p.email {
            Some(email) => format!("{email} ({})", p.role),
            None => format!(
                "the {} in directory {}",
                p.role,
                p.tenant_id.as_deref().unwrap_or("?")
            ),
        })
        .collect();
    let mut who = who;
    who.dedup_by(|a, b| a.split(' ').next() == b.split(' ').next());
    Ok(PageError::new(
        StatusCode::FORBIDDEN,
        "This subscription was bought by someone else",
        format!(
            "You signed in as {}, who is neither the purchaser nor the beneficiary of this subscription. Only {} may set it up.",
            identity.email.as_deref().unwrap_or(&identity.subject),
            who.join(" or ")
        ),
    )
    .step("Sign in with the account that bought the subscription, or ask its purchaser to open the set-up link from the Azure portal.")
    .step(rules.return_step.clone()))
}

/// What the buyer reads when a landing fails, and how to start again.
fn landing_page(error: &LandingError, rules: &MarketplaceRules) -> PageError {
    let name = &rules.display_name;
    let page = match error {
        LandingError::UnknownMarketplace(marketplace) => {
            return PageError::new(
                StatusCode::NOT_FOUND,
                "Unknown marketplace",
                format!("This service does not sell through `{marketplace}`."),
            );
        }
        LandingError::NoToken => PageError::new(
            StatusCode::BAD_REQUEST,
            "We could not find your subscription token",
            format!(
                "This page must be opened from {name} right after you subscribe; the link you followed has no subscription token."
            ),
        ),
        LandingError::InvalidToken(_) => PageError::new(
            StatusCode::BAD_REQUEST,
            "This subscription link is not valid",
            format!(
                "{name} did not recognise the token this page was opened with. Set-up links are short-lived: an old, copied or already expired link is refused."
            ),
        ),
        LandingError::ExpiredToken(_) => PageError::new(
            StatusCode::GONE,
            "This subscription link has expired",
            "Set-up links are short-lived and can only be used for a limited time.",
        ),
        LandingError::Unavailable(_) => PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The marketplace is not answering right now",
            format!("We could not confirm your subscription with {name} just now."),
        )
        .step("Wait a minute, then try again."),
        LandingError::Failed(error) => return PageError::internal(error),
    };
    page.step(rules.return_step.clone())
}
