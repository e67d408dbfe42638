//! The buyer's journey: landing from a marketplace, optional marketplace sign-in, sign-up or
//! linking an existing account, and the account overview.

use std::time::Duration as StdDuration;

use askama::Template;
use axum::{
    Form, Router,
    extract::{Path, Query, RawForm, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use axum_extra::extract::PrivateCookieJar;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use marketlink_core::{
    LandingToken, MarketplaceProvider, ProviderError, ResolvedPurchase, Role, SubscriptionStatus,
    Tenant, User,
};
use marketlink_engine::ClaimError;
use marketlink_store::SubscriptionFilter;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{
    AppState,
    pages::{Branding, PageError, render},
    password,
    session::{
        PendingSignIn, SIGN_IN_LIFETIME, Session, SessionUser, SignedInBuyer, current_user,
        random_token,
    },
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/{marketplace}/landing", get(landing).post(landing))
        .route("/{marketplace}/signin/callback", get(sign_in_callback))
        .route("/signup", get(signup_page).post(signup))
        .route("/signup/link", post(link))
        .route("/signup/contact", post(contact))
        .route("/signin", get(signin_page).post(signin))
        .route("/signout", post(signout))
        .route("/account", get(account))
}

/// A response plus the session to store with it.
type Reply = (PrivateCookieJar, Response);

pub(crate) fn marketplace_name(marketplace: &str) -> &str {
    match marketplace {
        "aws" => "AWS Marketplace",
        "azure" => "Microsoft's marketplace",
        other => other,
    }
}

fn go_back_step(marketplace: &str) -> String {
    match marketplace {
        "aws" => "Return to AWS Marketplace, open Your Marketplace Software, and choose \"Set up your account\" again.".into(),
        "azure" => "Return to the Azure portal, open your SaaS subscription, and choose \"Configure account now\" again.".into(),
        other => format!("Return to {other} and open the set-up link again."),
    }
}

struct Ctx<'a> {
    state: &'a AppState,
    brand: &'a Branding,
}

impl<'a> Ctx<'a> {
    fn new(state: &'a AppState) -> Self {
        Self {
            state,
            brand: &state.settings.branding,
        }
    }

    fn save(&self, session: Session, jar: PrivateCookieJar) -> PrivateCookieJar {
        session.save(
            jar,
            self.state.clock.now(),
            self.state.settings.secure_cookies,
        )
    }
}

async fn home(State(state): State<AppState>, jar: PrivateCookieJar) -> Redirect {
    let session = Session::load(&jar, state.clock.now());
    if session.user.is_some() {
        Redirect::to("/account")
    } else {
        Redirect::to("/signin")
    }
}

/// `GET|POST /{marketplace}/landing`: the URL registered with the marketplace.
async fn landing(
    State(state): State<AppState>,
    Path(marketplace): Path<String>,
    jar: PrivateCookieJar,
    RawForm(raw): RawForm,
) -> Reply {
    let ctx = Ctx::new(&state);
    let mut session = Session::load(&jar, state.clock.now());
    let Some(provider) = state.engine.providers.by_name(&marketplace).cloned() else {
        let page = PageError::new(
            StatusCode::NOT_FOUND,
            "Unknown marketplace",
            format!("This service does not sell through `{marketplace}`."),
        );
        return (jar, page.render(ctx.brand));
    };
    let fields: Vec<(String, String)> = form_urlencoded::parse(&raw).into_owned().collect();
    let Some(token) = provider.landing_token(&fields) else {
        let page = PageError::new(
            StatusCode::BAD_REQUEST,
            "We could not find your subscription token",
            format!(
                "This page must be opened from {} right after you subscribe; the link you followed has no subscription token.",
                marketplace_name(&marketplace)
            ),
        )
        .step(go_back_step(&marketplace));
        return (jar, page.render(ctx.brand));
    };
    if let Some(sign_in) = provider.buyer_sign_in() {
        let signed_in = session
            .buyer
            .as_ref()
            .is_some_and(|b| b.marketplace.as_str() == marketplace);
        if !signed_in {
            let verifier = random_token(32);
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            let pending = PendingSignIn {
                marketplace: provider.marketplace(),
                token: token.token.clone(),
                free_trial_hint: token.free_trial_hint,
                state: random_token(24),
                nonce: random_token(24),
                pkce_verifier: verifier,
                expires_at: (state.clock.now() + SIGN_IN_LIFETIME).unix_timestamp(),
            };
            let url = sign_in.authorize_url(&pending.state, &pending.nonce, &challenge);
            session.sign_in = Some(pending);
            return (ctx.save(session, jar), Redirect::to(&url).into_response());
        }
    }
    resolve_and_continue(&ctx, provider.as_ref(), &token, session, jar).await
}

/// `GET /{marketplace}/signin/callback`: back from the marketplace's identity provider.
async fn sign_in_callback(
    State(state): State<AppState>,
    Path(marketplace): Path<String>,
    jar: PrivateCookieJar,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Reply {
    let ctx = Ctx::new(&state);
    let mut session = Session::load(&jar, state.clock.now());
    let expired = || {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "Your sign-in could not be completed",
            "The sign-in took too long or was started in another browser window.",
        )
        .step(go_back_step(&marketplace))
    };
    let (Some(pending), Some(provider)) = (
        session.sign_in.take(),
        state.engine.providers.by_name(&marketplace).cloned(),
    ) else {
        return (jar, expired().render(ctx.brand));
    };
    let state_ok = query
        .get("state")
        .is_some_and(|s| bool::from(s.as_bytes().ct_eq(pending.state.as_bytes())));
    if !state_ok || pending.marketplace.as_str() != marketplace {
        return (ctx.save(session, jar), expired().render(ctx.brand));
    }
    if let Some(error) = query.get("error") {
        tracing::info!(%marketplace, %error, "buyer sign-in refused");
        let page = PageError::new(
            StatusCode::UNAUTHORIZED,
            "You did not sign in",
            "We need you to sign in with your work account to set up the subscription you bought.",
        )
        .step(go_back_step(&marketplace));
        return (ctx.save(session, jar), page.render(ctx.brand));
    }
    let (Some(code), Some(sign_in)) = (query.get("code"), provider.buyer_sign_in()) else {
        return (ctx.save(session, jar), expired().render(ctx.brand));
    };
    match sign_in
        .complete(code, &pending.pkce_verifier, &pending.nonce)
        .await
    {
        Ok(identity) => {
            session.buyer = Some(SignedInBuyer {
                marketplace: pending.marketplace.clone(),
                identity,
            });
            let token = LandingToken {
                token: pending.token,
                free_trial_hint: pending.free_trial_hint,
            };
            resolve_and_continue(&ctx, provider.as_ref(), &token, session, jar).await
        }
        Err(error) => {
            tracing::warn!(%marketplace, %error, "buyer sign-in failed");
            let page = PageError::new(
                StatusCode::UNAUTHORIZED,
                "We could not verify your sign-in",
                "Your identity provider's answer did not pass our checks.",
            )
            .step(go_back_step(&marketplace));
            (ctx.save(session, jar), page.render(ctx.brand))
        }
    }
}

/// Resolves the token at once (tokens are short-lived), retrying passing failures, then holds
/// the purchase in the session and continues to sign-up.
async fn resolve_and_continue(
    ctx: &Ctx<'_>,
    provider: &dyn MarketplaceProvider,
    token: &LandingToken,
    mut session: Session,
    jar: PrivateCookieJar,
) -> Reply {
    let marketplace = provider.marketplace().to_string();
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        match provider.resolve(token).await {
            Err(error) if error.is_retryable() && attempt < 3 => {
                let pause = match &error {
                    ProviderError::Retryable {
                        retry_after: Some(after),
                        ..
                    } => (*after).min(StdDuration::from_secs(2)),
                    _ => StdDuration::from_millis(250 * attempt),
                };
                tokio::time::sleep(pause).await;
            }
            other => break other,
        }
    };
    let page = match result {
        Ok(mut purchase) => {
            if purchase.buyer_email.is_none() {
                purchase.buyer_email = session
                    .buyer
                    .as_ref()
                    .and_then(|b| b.identity.email.clone());
            }
            tracing::info!(%marketplace, external_id = %purchase.subscription.external_id, "landing token resolved");
            session.hold_purchase(purchase, ctx.state.clock.now());
            return (
                ctx.save(session, jar),
                Redirect::to("/signup").into_response(),
            );
        }
        Err(ProviderError::InvalidToken(_)) => PageError::new(
            StatusCode::BAD_REQUEST,
            "This subscription link is not valid",
            format!(
                "{} did not recognise the token this page was opened with. Set-up links are short-lived: an old, copied or already expired link is refused.",
                marketplace_name(&marketplace)
            ),
        )
        .step(go_back_step(&marketplace)),
        Err(ProviderError::ExpiredToken(_)) => PageError::new(
            StatusCode::GONE,
            "This subscription link has expired",
            "Set-up links are short-lived and can only be used for a limited time.",
        )
        .step(go_back_step(&marketplace)),
        Err(error) if error.is_retryable() => {
            tracing::warn!(%marketplace, %error, "resolve failed after retries");
            PageError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The marketplace is not answering right now",
                format!(
                    "We could not confirm your subscription with {} just now.",
                    marketplace_name(&marketplace)
                ),
            )
            .step("Wait a minute, then try again.")
            .step(go_back_step(&marketplace))
        }
        Err(error) => PageError::internal(&error),
    };
    (ctx.save(session, jar), page.render(ctx.brand))
}

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
}

/// A form that acts on the pending purchase: the CSRF token must match and a purchase must
/// be waiting in the session.
fn checked_purchase(
    session: &Session,
    csrf: &str,
    brand: &Branding,
) -> Result<crate::session::PendingPurchase, Box<Response>> {
    if !session.csrf_matches(csrf) {
        return Err(Box::new(PageError::forbidden_form().render(brand)));
    }
    session
        .purchase
        .clone()
        .ok_or_else(|| Box::new(no_purchase_page().render(brand)))
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

fn signup_page_for(
    state: &AppState,
    session: &Session,
    purchase: &ResolvedPurchase,
    error: Option<String>,
    form: Option<&SignupForm>,
) -> SignupPage {
    let external = &purchase.subscription;
    let product_name = state
        .engine
        .catalog
        .by_listing(&external.marketplace, &external.product_code)
        .map(|p| p.name.clone())
        .or_else(|| purchase.display_name.clone())
        .unwrap_or_else(|| external.product_code.clone());
    let identity = session.buyer.as_ref().map(|b| &b.identity);
    SignupPage {
        brand: state.settings.branding.clone(),
        csrf: session.csrf.clone(),
        marketplace_name: marketplace_name(external.marketplace.as_str()).to_owned(),
        product_name,
        plan: purchase.plan_id.as_ref().map(|p| p.to_string()),
        quantity: purchase.quantity,
        free_trial: purchase.free_trial,
        error,
        form_name: form
            .map(|f| f.name.clone())
            .or_else(|| identity.and_then(|i| i.name.clone()))
            .unwrap_or_default(),
        form_company: form.map(|f| f.company.clone()).unwrap_or_default(),
        form_email: form
            .map(|f| f.email.clone())
            .or_else(|| purchase.buyer_email.clone())
            .unwrap_or_default(),
        signed_in_as: session.user.as_ref().map(|u| u.email.clone()),
    }
}

async fn signup_page(State(state): State<AppState>, jar: PrivateCookieJar) -> Reply {
    let ctx = Ctx::new(&state);
    let session = Session::load(&jar, state.clock.now());
    let Some(pending) = session.purchase.clone() else {
        return (jar, no_purchase_page().render(ctx.brand));
    };
    let page = signup_page_for(&state, &session, &pending.purchase, None, None);
    (ctx.save(session, jar), render(StatusCode::OK, &page))
}

// No Debug: it holds a password.
#[derive(Deserialize)]
struct SignupForm {
    csrf: String,
    name: String,
    #[serde(default)]
    company: String,
    email: String,
    password: String,
}

async fn signup(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Form(form): Form<SignupForm>,
) -> Reply {
    let ctx = Ctx::new(&state);
    let mut session = Session::load(&jar, state.clock.now());
    let pending = match checked_purchase(&session, &form.csrf, ctx.brand) {
        Ok(pending) => pending,
        Err(page) => return (jar, *page),
    };
    let purchase = &pending.purchase;
    let again = |status: StatusCode, message: String, session: &Session| {
        render(
            status,
            &signup_page_for(&state, session, purchase, Some(message), Some(&form)),
        )
    };
    if let Err(page) = refuse_if_linked_elsewhere(&state, purchase, None).await {
        return (jar, page.render(ctx.brand));
    }
    let now = state.clock.now();
    let company = Some(form.company.as_str()).filter(|c| !c.trim().is_empty());
    let tenant = match Tenant::new(&form.name, company, &form.email, now) {
        Ok(tenant) => tenant,
        Err(error) => {
            return (
                jar,
                again(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    capitalise(&error.to_string()),
                    &session,
                ),
            );
        }
    };
    if let Err(message) = password::check_strength(&form.password) {
        return (
            jar,
            again(StatusCode::UNPROCESSABLE_ENTITY, message, &session),
        );
    }
    let owner = match User::new(tenant.id, &form.email, Some(&form.name), Role::Owner, now) {
        Ok(user) => user,
        Err(error) => {
            return (
                jar,
                again(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    capitalise(&error.to_string()),
                    &session,
                ),
            );
        }
    };
    let hash = match password::hash(form.password.clone()).await {
        Ok(hash) => hash,
        Err(error) => return (jar, PageError::internal(&error).render(ctx.brand)),
    };
    match state
        .store
        .create_tenant_with_owner(&tenant, &owner, Some(&hash))
        .await
    {
        Ok(()) => {}
        Err(marketlink_store::StoreError::Conflict(message)) => {
            return (
                jar,
                again(StatusCode::CONFLICT, capitalise(&message), &session),
            );
        }
        Err(error) => return (jar, PageError::internal(&error).render(ctx.brand)),
    }
    tracing::info!(tenant = %tenant.id, "tenant created at sign-up");
    let mut data = marketlink_engine::webhooks::tenant_data(&tenant);
    data["owner"] = serde_json::json!({ "email": owner.email, "name": owner.name });
    data["marketplace"] = serde_json::json!(purchase.subscription.marketplace);
    if let Err(error) = state.engine.notify_vendor("tenant.created", data).await {
        return (jar, PageError::internal(&error).render(ctx.brand));
    }
    session.user = Some(SessionUser {
        user_id: owner.id,
        tenant_id: tenant.id,
        email: owner.email.clone(),
    });
    finish_claim(&ctx, session, jar, purchase.clone()).await
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// `POST /signup/link`: a signed-in user adds the pending purchase to their tenant.
async fn link(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Form(form): Form<CsrfForm>,
) -> Reply {
    let ctx = Ctx::new(&state);
    let session = Session::load(&jar, state.clock.now());
    let pending = match checked_purchase(&session, &form.csrf, ctx.brand) {
        Ok(pending) => pending,
        Err(page) => return (jar, *page),
    };
    if session.user.is_none() {
        return (jar, Redirect::to("/signup").into_response());
    }
    finish_claim(&ctx, session, jar, pending.purchase).await
}

#[derive(Debug, Deserialize)]
struct ContactForm {
    csrf: String,
    name: String,
    email: String,
    #[serde(default)]
    company: String,
    #[serde(default)]
    message: String,
}

/// `POST /signup/contact`: seed 000's manual path. The vendor's team sets the account up; the
/// request keeps the purchase exactly as the marketplace resolved it.
async fn contact(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Form(form): Form<ContactForm>,
) -> Reply {
    let ctx = Ctx::new(&state);
    let mut session = Session::load(&jar, state.clock.now());
    let pending = match checked_purchase(&session, &form.csrf, ctx.brand) {
        Ok(pending) => pending,
        Err(page) => return (jar, *page),
    };
    let email = form.email.trim().to_lowercase();
    if form.name.trim().is_empty() || !marketlink_core::tenant::looks_like_email(&email) {
        let page = signup_page_for(
            &state,
            &session,
            &pending.purchase,
            Some("Enter your name and a valid email address so we can reach you.".into()),
            None,
        );
        return (jar, render(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    let non_empty = |s: &str| Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned);
    let request = marketlink_store::OnboardingRequest {
        id: uuid::Uuid::now_v7(),
        name: form.name.trim().chars().take(200).collect(),
        email: email.clone(),
        company: non_empty(&form.company),
        message: non_empty(&form.message).map(|m| m.chars().take(2000).collect()),
        purchase: pending.purchase.clone(),
        status: "open".into(),
        created_at: state.clock.now(),
    };
    if let Err(error) = state.store.create_onboarding_request(&request).await {
        return (jar, PageError::internal(&error).render(ctx.brand));
    }
    tracing::info!(
        request = %request.id,
        marketplace = %pending.purchase.subscription.marketplace,
        customer = %pending.purchase.subscription.customer_id,
        "manual onboarding requested; the vendor's team must set up this account"
    );
    session.purchase = None;
    let mut page = PageError::new(
        StatusCode::OK,
        "We are setting up your account",
        format!(
            "Thank you. Our team will set up your account and write to {email} within one business day."
        ),
    )
    .step("You do not need to do anything else now.");
    if let Some(support) = &state.settings.branding.support_email {
        page = page.step(format!("Questions in the meantime: {support}"));
    }
    (ctx.save(session, jar), page.render(ctx.brand))
}

/// Refuses early when the marketplace identity is already bound to another tenant.
async fn refuse_if_linked_elsewhere(
    state: &AppState,
    purchase: &ResolvedPurchase,
    tenant: Option<marketlink_core::TenantId>,
) -> Result<(), PageError> {
    let external = &purchase.subscription;
    let existing = state
        .store
        .find_subscription(&external.marketplace, &external.external_id)
        .await
        .map_err(|e| PageError::internal(&e))?;
    match existing.and_then(|s| s.tenant_id) {
        Some(owner) if Some(owner) != tenant => Err(already_linked(external.marketplace.as_str())),
        _ => Ok(()),
    }
}

fn already_linked(marketplace: &str) -> PageError {
    PageError::new(
        StatusCode::CONFLICT,
        "This subscription belongs to another account",
        format!(
            "The {} subscription you are setting up is already linked to a different account here.",
            marketplace_name(marketplace)
        ),
    )
    .step("Sign in with the account that first set it up, or ask its owner to invite you.")
    .action("/signin", "Sign in")
}

async fn finish_claim(
    ctx: &Ctx<'_>,
    mut session: Session,
    jar: PrivateCookieJar,
    purchase: ResolvedPurchase,
) -> Reply {
    let Some(user) = session.user.clone() else {
        return (jar, Redirect::to("/signin").into_response());
    };
    match ctx
        .state
        .engine
        .claim_purchase(&purchase, user.tenant_id)
        .await
    {
        Ok(subscription) => {
            tracing::info!(subscription = %subscription.id, tenant = %user.tenant_id, "subscription linked");
            session.purchase = None;
            (
                ctx.save(session, jar),
                Redirect::to("/account?linked=1").into_response(),
            )
        }
        Err(ClaimError::AlreadyLinked(marketplace)) => {
            session.purchase = None;
            (
                ctx.save(session, jar),
                already_linked(&marketplace).render(ctx.brand),
            )
        }
        Err(ClaimError::Store(error)) => (jar, PageError::internal(&error).render(ctx.brand)),
    }
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SigninPage {
    brand: Branding,
    csrf: String,
    email: String,
    error: Option<String>,
}

async fn signin_page(State(state): State<AppState>, jar: PrivateCookieJar) -> Reply {
    let session = Session::load(&jar, state.clock.now());
    let page = SigninPage {
        brand: state.settings.branding.clone(),
        csrf: session.csrf.clone(),
        email: String::new(),
        error: None,
    };
    let ctx = Ctx::new(&state);
    (ctx.save(session, jar), render(StatusCode::OK, &page))
}

// No Debug: it holds a password.
#[derive(Deserialize)]
struct SigninForm {
    csrf: String,
    email: String,
    password: String,
}

async fn signin(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Form(form): Form<SigninForm>,
) -> Reply {
    let ctx = Ctx::new(&state);
    let mut session = Session::load(&jar, state.clock.now());
    if !session.csrf_matches(&form.csrf) {
        return (jar, PageError::forbidden_form().render(ctx.brand));
    }
    let found = match state.store.find_user_by_email(&form.email).await {
        Ok(found) => found,
        Err(error) => return (jar, PageError::internal(&error).render(ctx.brand)),
    };
    let verified = match &found {
        Some((_, Some(hash))) => password::verify(form.password.clone(), hash.clone()).await,
        // Spend the same time when the email is unknown, so timing does not reveal accounts.
        _ => {
            let _ = password::verify(form.password.clone(), password::DUMMY_HASH.into()).await;
            false
        }
    };
    let user = match (verified, found) {
        (true, Some((user, _))) => user,
        _ => {
            let message = "That email and password do not match an account.".to_owned();
            let page = match &session.purchase {
                Some(pending) => render(
                    StatusCode::UNAUTHORIZED,
                    &signup_page_for(&state, &session, &pending.purchase, Some(message), None),
                ),
                None => render(
                    StatusCode::UNAUTHORIZED,
                    &SigninPage {
                        brand: state.settings.branding.clone(),
                        csrf: session.csrf.clone(),
                        email: form.email.clone(),
                        error: Some(message),
                    },
                ),
            };
            return (jar, page);
        }
    };
    session.user = Some(SessionUser {
        user_id: user.id,
        tenant_id: user.tenant_id,
        email: user.email.clone(),
    });
    if let Some(pending) = session.purchase.clone() {
        if let Err(page) =
            refuse_if_linked_elsewhere(&state, &pending.purchase, Some(user.tenant_id)).await
        {
            session.purchase = None;
            return (ctx.save(session, jar), page.render(ctx.brand));
        }
        return finish_claim(&ctx, session, jar, pending.purchase).await;
    }
    (
        ctx.save(session, jar),
        Redirect::to("/account").into_response(),
    )
}

async fn signout(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Form(form): Form<CsrfForm>,
) -> Reply {
    let ctx = Ctx::new(&state);
    let session = Session::load(&jar, state.clock.now());
    if !session.csrf_matches(&form.csrf) {
        return (jar, PageError::forbidden_form().render(ctx.brand));
    }
    let fresh = Session::reset(state.clock.now());
    (
        ctx.save(fresh, jar),
        Redirect::to("/signin").into_response(),
    )
}

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
    tenant_name: String,
    notice: Option<String>,
    subscriptions: Vec<SubscriptionRow>,
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

async fn account(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Reply {
    let ctx = Ctx::new(&state);
    let session = Session::load(&jar, state.clock.now());
    let Some(user) = session.user.clone() else {
        return (jar, Redirect::to("/signin").into_response());
    };
    match current_user(&state.store, &session).await {
        Ok(Some(_)) => {}
        // Removed from the account since signing in: the session ends here.
        Ok(None) => {
            let fresh = Session::reset(state.clock.now());
            return (
                ctx.save(fresh, jar),
                Redirect::to("/signin").into_response(),
            );
        }
        Err(error) => return (jar, PageError::internal(&error).render(ctx.brand)),
    }
    let tenant = match state.store.get_tenant(user.tenant_id).await {
        Ok(tenant) => tenant,
        Err(error) => return (jar, PageError::internal(&error).render(ctx.brand)),
    };
    let subscriptions = match state
        .store
        .list_subscriptions(&SubscriptionFilter {
            tenant_id: Some(user.tenant_id),
            limit: 200,
            ..Default::default()
        })
        .await
    {
        Ok(list) => list,
        Err(error) => return (jar, PageError::internal(&error).render(ctx.brand)),
    };
    let mut rows = Vec::with_capacity(subscriptions.len());
    for s in subscriptions {
        let entitlements = state.store.entitlements(s.id).await.unwrap_or_default();
        let details = overview_details(&s, &entitlements);
        let (status, status_class) = status_words(s.status);
        rows.push(SubscriptionRow {
            id: s.id.to_string(),
            product: s
                .product_id
                .as_ref()
                .and_then(|p| state.engine.catalog.product(p))
                .map(|p| p.name.clone())
                .unwrap_or_else(|| s.external.product_code.clone()),
            marketplace: marketplace_name(s.external.marketplace.as_str()).to_owned(),
            plan: s
                .plan_id
                .map(|p| p.to_string())
                .unwrap_or_else(|| "—".into()),
            status: status.into(),
            status_class,
            details,
        });
    }
    let page = AccountPage {
        brand: state.settings.branding.clone(),
        csrf: session.csrf.clone(),
        email: user.email,
        // The company names the account when the buyer gave one; else the person's name.
        tenant_name: tenant.company.unwrap_or(tenant.name),
        notice: query
            .contains_key("linked")
            .then(|| "Your subscription is linked to this account.".to_owned()),
        subscriptions: rows,
    };
    (ctx.save(session, jar), render(StatusCode::OK, &page))
}

/// What the buyer bought beyond the plan: contract dimensions (the plan has its own column; a
/// seat count may come both as an entitlement and as the quantity: each fact once), the end of
/// a free trial, and when the term renews or ends.
fn overview_details(
    s: &marketlink_core::Subscription,
    entitlements: &[marketlink_core::Entitlement],
) -> Vec<String> {
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
    s: &marketlink_core::Subscription,
    entitlements: &[marketlink_core::Entitlement],
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

fn capitalise(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
