//! The purchase waiting in the session: the sign-up page, a new account (tenant, owner and
//! claim at once), linking it to the signed-in user's account, or asking the vendor's team
//! to set the account up.

use askama::Template;
use axum::{
    Form,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use marketlink_core::{ResolvedPurchase, User};
use marketlink_engine::{ClaimError, ContactError, ContactRequest, NewAccount, SignUpError};
use serde::Deserialize;

use super::Reply;
use crate::{
    AppState,
    extract::Browser,
    pages::{Branding, PageError, render},
    password,
    session::{CsrfForm, PendingPurchase, Session, SessionUser},
};

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    brand: Branding,
    csrf: String,
    marketplace_name: String,
    product_name: String,
    plan: Option<String>,
    quantity: Option<u32>,
    free_trial: bool,
    error: Option<String>,
    form_name: String,
    form_company: String,
    form_email: String,
    signed_in_as: Option<String>,
    /// Another account here (not the signed-in one) already holds this purchase: a buyer who
    /// subscribed again. Signing in to it links it again; a new account would be refused.
    already_set_up: bool,
}

/// What the buyer typed, shown again when the form is refused.
#[derive(Default)]
pub(super) struct Typed {
    pub name: String,
    pub company: String,
    pub email: String,
}

/// The sign-up page for `purchase`, with `error` and what the buyer typed when refused.
pub(super) fn signup_page_for(
    state: &AppState,
    session: &Session,
    purchase: &ResolvedPurchase,
    error: Option<String>,
    typed: Option<Typed>,
) -> SignupPageReply {
    let external = &purchase.subscription;
    let product_name = state
        .engine
        .catalog
        .by_listing(&external.marketplace, &external.product_code)
        .map(|p| p.name.clone())
        .or_else(|| purchase.display_name.clone())
        .unwrap_or_else(|| external.product_code.clone());
    let identity = session.buyer.as_ref().map(|b| &b.identity);
    let rules = state
        .engine
        .marketplace_rules(external.marketplace.as_str());
    let typed_email = typed.as_ref().map(|t| t.email.clone());
    let typed_name = typed.as_ref().map(|t| t.name.clone());
    SignupPageReply(SignupPage {
        brand: state.settings.branding.clone(),
        csrf: session.csrf.clone(),
        marketplace_name: rules.display_name.into_owned(),
        product_name,
        plan: purchase.plan_id.as_ref().map(|p| p.to_string()),
        quantity: purchase.quantity,
        free_trial: purchase.free_trial,
        error,
        form_name: typed_name
            .or_else(|| identity.and_then(|i| i.name.clone()))
            .unwrap_or_default(),
        form_company: typed.map(|t| t.company).unwrap_or_default(),
        form_email: typed_email
            .or_else(|| purchase.buyer_email.clone())
            .unwrap_or_default(),
        signed_in_as: session.user.as_ref().map(|u| u.email.clone()),
        already_set_up: false,
    })
}

/// A rendered sign-up page, ready to be sent with any status.
pub(super) struct SignupPageReply(SignupPage);

impl SignupPageReply {
    pub(super) fn with_status(&self, status: StatusCode) -> Response {
        render(status, &self.0)
    }
}

/// The purchase a form acts on: the CSRF token must match and a purchase must be waiting.
fn checked_purchase(session: &Session, csrf: &str) -> Result<PendingPurchase, Box<PageError>> {
    if !session.csrf_matches(csrf) {
        return Err(Box::new(PageError::forbidden_form()));
    }
    session
        .purchase
        .clone()
        .ok_or_else(|| Box::new(no_purchase_page()))
}

fn no_purchase_page() -> PageError {
    PageError::new(
        StatusCode::BAD_REQUEST,
        "There is no subscription waiting to be set up",
        "Your set-up session has expired (it lasts one hour) or this page was opened directly.",
    )
    .step("Return to the marketplace where you subscribed and open the set-up link again.")
    .action("/signin", "Sign in to your account")
}

fn already_linked(state: &AppState, marketplace: &str) -> PageError {
    PageError::new(
        StatusCode::CONFLICT,
        "This subscription belongs to another account",
        format!(
            "The {} subscription you are setting up is already linked to a different account here.",
            state.engine.marketplace_rules(marketplace).display_name
        ),
    )
    .step("Sign in with the account that first set it up, or ask its owner to invite you.")
    .action("/signin", "Sign in")
}

/// `GET /signup`.
pub(super) async fn signup_page(State(state): State<AppState>, browser: Browser) -> Reply {
    let pending = browser
        .session
        .purchase
        .clone()
        .ok_or_else(no_purchase_page)?;
    let mut page = signup_page_for(&state, &browser.session, &pending.purchase, None, None);
    let holder = state
        .engine
        .returning_purchase(&pending.purchase)
        .await
        .map_err(|e| PageError::internal(&e))?
        .and_then(|held| held.tenant_id);
    let signed_in_tenant = browser.session.user.as_ref().map(|u| u.tenant_id);
    page.0.already_set_up = holder.is_some() && holder != signed_in_tenant;
    Ok((browser.save(&state), page.with_status(StatusCode::OK)))
}

// No Debug: it holds a password.
#[derive(Deserialize)]
pub(super) struct SignupForm {
    csrf: String,
    name: String,
    #[serde(default)]
    company: String,
    email: String,
    password: String,
}

/// `POST /signup`: a new account (tenant and owner) that claims the purchase, all or nothing.
pub(super) async fn signup(
    State(state): State<AppState>,
    mut browser: Browser,
    Form(form): Form<SignupForm>,
) -> Reply {
    let pending = checked_purchase(&browser.session, &form.csrf).map_err(|page| *page)?;
    let purchase = &pending.purchase;
    let again = |browser: Browser, status: StatusCode, message: String| {
        let typed = Typed {
            name: form.name.clone(),
            company: form.company.clone(),
            email: form.email.clone(),
        };
        let page = signup_page_for(
            &state,
            &browser.session,
            purchase,
            Some(message),
            Some(typed),
        );
        (browser.unsaved(), page.with_status(status))
    };
    let account = NewAccount {
        name: &form.name,
        company: &form.company,
        email: &form.email,
    };
    let (tenant, owner) = match state.engine.new_account(account) {
        Ok(pair) => pair,
        Err(error) => {
            return Ok(again(
                browser,
                StatusCode::UNPROCESSABLE_ENTITY,
                capitalise(&error.to_string()),
            ));
        }
    };
    if let Err(message) = password::check_strength(&form.password) {
        return Ok(again(browser, StatusCode::UNPROCESSABLE_ENTITY, message));
    }
    let hash = password::hash(form.password.clone()).await?;
    match state
        .engine
        .sign_up_and_claim(&tenant, &owner, &hash, purchase)
        .await
    {
        Ok(_) => {}
        Err(SignUpError::Invalid(message)) => {
            return Ok(again(
                browser,
                StatusCode::UNPROCESSABLE_ENTITY,
                capitalise(&message),
            ));
        }
        Err(SignUpError::EmailTaken(message)) => {
            return Ok(again(browser, StatusCode::CONFLICT, capitalise(&message)));
        }
        Err(SignUpError::AlreadyLinked(marketplace)) => {
            return Err(already_linked(&state, &marketplace));
        }
        Err(SignUpError::Store(error)) => return Err(PageError::internal(&error)),
    }
    browser.changes_hands();
    browser.session.user = Some(SessionUser {
        user_id: owner.id,
        tenant_id: tenant.id,
        email: owner.email.clone(),
    });
    browser.session.purchase = None;
    Ok((
        browser.save(&state),
        Redirect::to("/account?linked=1").into_response(),
    ))
}

/// `POST /signup/link`: a signed-in user adds the pending purchase to their tenant.
pub(super) async fn link(
    State(state): State<AppState>,
    browser: Browser,
    Form(form): Form<CsrfForm>,
) -> Reply {
    let pending = checked_purchase(&browser.session, &form.csrf).map_err(|page| *page)?;
    let Some(signed_in) = &browser.session.user else {
        return Ok((browser.unsaved(), Redirect::to("/signup").into_response()));
    };
    let user = state
        .engine
        .signed_in_user(signed_in.user_id, signed_in.tenant_id)
        .await
        .map_err(|e| PageError::internal(&e))?;
    let Some(user) = user else {
        return Ok((browser.unsaved(), Redirect::to("/signup").into_response()));
    };
    finish_link(&state, browser, &user, &pending.purchase).await
}

/// Links `purchase` to `user`'s tenant; the purchase leaves the session either way.
pub(super) async fn finish_link(
    state: &AppState,
    mut browser: Browser,
    user: &User,
    purchase: &ResolvedPurchase,
) -> Reply {
    let page = match state.engine.link_purchase(user, purchase).await {
        Ok(_) => Redirect::to("/account?linked=1").into_response(),
        Err(ClaimError::AlreadyLinked(marketplace)) => {
            already_linked(state, &marketplace).into_response()
        }
        Err(ClaimError::NotPermitted) => {
            // The purchase stays in the session: an owner or admin may sign in to link it,
            // or the buyer may sign up a new account.
            let page = PageError::new(
                StatusCode::FORBIDDEN,
                "Only owners and admins can add subscriptions",
                "You are a member of this account; adding a subscription to it takes an owner or admin.",
            )
            .step("Ask an owner or admin of your account to open the set-up link, or sign out and sign up a new account.");
            return Ok((browser.save(state), page.into_page()));
        }
        Err(ClaimError::Store(error)) => return Err(PageError::internal(&error)),
    };
    browser.session.purchase = None;
    Ok((browser.save(state), page))
}

#[derive(Debug, Deserialize)]
pub(super) struct ContactForm {
    csrf: String,
    name: String,
    email: String,
    #[serde(default)]
    company: String,
    #[serde(default)]
    message: String,
}

/// `POST /signup/contact`: seed 000's manual path. The vendor's team sets the account up.
pub(super) async fn contact(
    State(state): State<AppState>,
    mut browser: Browser,
    Form(form): Form<ContactForm>,
) -> Reply {
    let pending = checked_purchase(&browser.session, &form.csrf).map_err(|page| *page)?;
    let request = ContactRequest {
        name: &form.name,
        email: &form.email,
        company: &form.company,
        message: &form.message,
    };
    let stored = match state
        .engine
        .request_onboarding(request, &pending.purchase)
        .await
    {
        Ok(stored) => stored,
        Err(ContactError::Invalid) => {
            let message = "Enter your name and a valid email address so we can reach you.";
            let page = signup_page_for(
                &state,
                &browser.session,
                &pending.purchase,
                Some(message.into()),
                None,
            );
            return Ok((
                browser.unsaved(),
                page.with_status(StatusCode::UNPROCESSABLE_ENTITY),
            ));
        }
        Err(ContactError::Store(error)) => return Err(PageError::internal(&error)),
    };
    browser.session.purchase = None;
    let mut page = PageError::new(
        StatusCode::OK,
        "We are setting up your account",
        format!(
            "Thank you. Our team will set up your account and write to {} within one business day.",
            stored.email
        ),
    )
    .step("You do not need to do anything else now.");
    if let Some(support) = &state.settings.branding.support_email {
        page = page.step(format!("Questions in the meantime: {support}"));
    }
    Ok((browser.save(&state), page.into_response()))
}

/// `message` with its first letter upper-cased, for a page title or a sentence.
pub(super) fn capitalise(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
