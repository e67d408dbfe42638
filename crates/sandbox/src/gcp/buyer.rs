//! What buyers do in the Google Cloud console, for tests and the buyer page: purchase (with the
//! sign-up JWT of gcp.md §1), plan change requests, cancellation, reverted cancellation,
//! renewal. Each publishes the message Google sends (gcp.md §2: S5, S7, S9 enum, S12) and
//! moves the entitlement as the `EntitlementState` descriptions say (gcp.md §3, S8).

use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use self::EntitlementState::{
    EntitlementActivationRequested as Requested, EntitlementActive as Active,
    EntitlementPendingCancellation as PendingCancellation,
    EntitlementPendingPlanChangeApproval as PendingPlanChange,
};
use super::{
    Shared, State,
    events::{account_event, entitlement_event, fields},
    keys::forger_key,
    model::{Account, Approval, ApprovalState, Entitlement, EntitlementState, timestamp},
};

/// The sign-up JWT's issuer, which is also its key URL (S2); providers pin it.
pub const SIGN_UP_ISSUER: &str = "https://www.googleapis.com/robot/v1/metadata/x509/cloud-commerce-partner@system.gserviceaccount.com";

/// A private offer's terms (S7, S12).
#[derive(Debug, Clone, Default)]
pub struct PrivateOffer {
    /// `projects/{p}/services/{s}/privateOffers/{o}`.
    pub offer: String,
    /// ISO-8601 duration, e.g. `P1Y6M`.
    pub offer_duration: Option<String>,
    pub offer_end_time: Option<OffsetDateTime>,
}

/// A buyer's order.
#[derive(Debug, Clone, Default)]
pub struct PurchaseRequest {
    pub plan: String,
    /// An existing account buys again (multiple orders, S5); none creates an account.
    pub account_id: Option<String>,
    /// Usage-priced: the entitlement gets a `usageReportingId` (S8: "only for usage-based").
    pub usage_based: bool,
    pub private_offer: Option<PrivateOffer>,
    /// `google.user_identity` of the sign-up JWT.
    pub user_identity: Option<String>,
}

impl PurchaseRequest {
    /// A usage-priced public order of `plan` by a new account.
    pub fn plan(plan: &str) -> Self {
        Self {
            plan: plan.into(),
            usage_based: true,
            ..Self::default()
        }
    }
}

/// What a purchase created.
#[derive(Debug, Clone)]
pub struct Purchase {
    pub account_id: String,
    pub entitlement_id: String,
    pub order_id: String,
    pub usage_reporting_id: Option<String>,
    /// The `x-gcp-marketplace-token` the buyer's browser POSTs to the sign-up URL.
    pub sign_up_token: String,
}

/// How the buyer cancels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancellationPolicy {
    /// Ends now: CANCELLED, ENTITLEMENT_CANCELLED.
    Immediate,
    /// Ends at the term's end: PENDING_CANCELLATION, ENTITLEMENT_PENDING_CANCELLATION, then
    /// `end_term` cancels.
    EndOfTerm,
}

/// Claims of a sign-up JWT for `account_id` (S2: exp = iat + 5 min; `google` claims optional).
pub(crate) fn sign_up_claims(shared: &Shared, account_id: &str, google: Option<Value>) -> Value {
    let iat = shared.clock.now().unix_timestamp();
    let mut claims = json!({
        "iss": SIGN_UP_ISSUER,
        "iat": iat,
        "exp": iat + 300,
        "aud": shared.config.product_domain,
        "sub": account_id,
    });
    if let Some(google) = google {
        claims["google"] = google;
    }
    claims
}

pub(crate) fn sign_up_token(
    shared: &Shared,
    claims: &Value,
    forged: bool,
) -> anyhow::Result<String> {
    let token = if forged {
        forger_key()?.sign_as(claims, &shared.keys.signup.kid)
    } else {
        shared.keys.signup.sign(claims)
    }?;
    crate::fuzz_seed("gcp_signup_jwt", token.as_bytes());
    Ok(token)
}

fn random_digits(n: usize) -> String {
    let digits: String = uuid::Uuid::new_v4().as_u128().to_string();
    digits.chars().rev().take(n).collect()
}

fn new_account(shared: &Shared, now: &str) -> Account {
    let id = uuid::Uuid::new_v4().to_string();
    let provider = &shared.config.provider_id;
    Account {
        name: format!("providers/{provider}/accounts/{id}"),
        provider: provider.clone(),
        state: "ACCOUNT_ACTIVE".into(),
        approvals: vec![Approval {
            name: "signup".into(),
            state: ApprovalState::Pending,
            reason: String::new(),
            update_time: now.into(),
        }],
        create_time: now.into(),
        update_time: now.into(),
    }
}

/// Creates (or reuses) the account and a new entitlement in ACTIVATION_REQUESTED, publishes
/// ACCOUNT_ACTIVE for a new account and ENTITLEMENT_CREATION_REQUESTED (a private offer:
/// ENTITLEMENT_OFFER_ACCEPTED with its offer fields, S12), and signs the sign-up JWT.
pub(crate) fn purchase(shared: &Arc<Shared>, request: PurchaseRequest) -> anyhow::Result<Purchase> {
    if !shared.config.plans.contains(&request.plan) {
        bail!("unknown plan {}", request.plan);
    }
    let now = timestamp(shared.clock.now());
    let provider = shared.config.provider_id.clone();
    let mut state = shared.lock();
    let account_id = match &request.account_id {
        Some(id) if state.accounts.contains_key(id) => id.clone(),
        Some(id) => bail!("unknown account {id}"),
        None => {
            let account = new_account(shared, &now);
            let id = account
                .name
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            state.accounts.insert(id.clone(), account);
            account_event(shared, &mut state, "ACCOUNT_ACTIVE", &id);
            id
        }
    };
    let entitlement = new_entitlement(shared, &request, &account_id, &now, &provider);
    let order_id = entitlement.order_id.clone();
    let (event, extra) = match &request.private_offer {
        Some(offer) => (
            "ENTITLEMENT_OFFER_ACCEPTED",
            fields([
                ("newPlan", Some(request.plan.clone())),
                ("newOffer", Some(offer.offer.clone())),
                ("newOfferDuration", offer.offer_duration.clone()),
                ("newOfferEndTime", offer.offer_end_time.map(timestamp)),
                ("orderId", Some(order_id.clone())),
            ]),
        ),
        None => (
            "ENTITLEMENT_CREATION_REQUESTED",
            fields([("orderId", Some(order_id.clone()))]),
        ),
    };
    state
        .entitlements
        .insert(entitlement.id().to_owned(), entitlement.clone());
    entitlement_event(shared, &mut state, event, &entitlement, extra);
    drop(state);
    let google = json!({
        "user_identity": request.user_identity.unwrap_or_default(),
        "orders": [order_id],
    });
    let claims = sign_up_claims(shared, &account_id, Some(google));
    Ok(Purchase {
        account_id,
        entitlement_id: entitlement.id().to_owned(),
        order_id,
        usage_reporting_id: entitlement.usage_reporting_id.clone(),
        sign_up_token: sign_up_token(shared, &claims, false)?,
    })
}

fn new_entitlement(
    shared: &Shared,
    request: &PurchaseRequest,
    account_id: &str,
    now: &str,
    provider: &str,
) -> Entitlement {
    let id = uuid::Uuid::new_v4().to_string();
    let offer = request.private_offer.clone().unwrap_or_default();
    Entitlement {
        name: format!("providers/{provider}/entitlements/{id}"),
        account: format!("providers/{provider}/accounts/{account_id}"),
        provider: provider.into(),
        product_external_name: shared.config.product_domain.clone(),
        plan: request.plan.clone(),
        offer: request.private_offer.as_ref().map(|o| o.offer.clone()),
        offer_duration: offer.offer_duration,
        offer_end_time: offer.offer_end_time.map(timestamp),
        state: EntitlementState::EntitlementActivationRequested,
        create_time: now.into(),
        update_time: now.into(),
        usage_reporting_id: request
            .usage_based
            .then(|| format!("project_number:{}", random_digits(12))),
        order_id: uuid::Uuid::new_v4().to_string(),
        ..Entitlement::default()
    }
}

/// Applies a buyer action to entitlement `id` when its state is one of `from`, then publishes
/// `event` with `extra`.
fn transition(
    shared: &Arc<Shared>,
    id: &str,
    from: &[EntitlementState],
    event: &str,
    change: impl FnOnce(&mut Entitlement, OffsetDateTime) -> serde_json::Map<String, Value>,
) -> anyhow::Result<()> {
    let now = shared.clock.now();
    let mut state = shared.lock();
    let state: &mut State = &mut state;
    let entitlement = state
        .entitlements
        .get_mut(id)
        .with_context(|| format!("unknown entitlement {id}"))?;
    if !from.contains(&entitlement.state) {
        bail!("entitlement {id} is {}", entitlement.state.name());
    }
    let extra = change(entitlement, now);
    entitlement.update_time = timestamp(now);
    // S8: `messageToUser` is "cleared automatically when the entitlement state changes".
    entitlement.message_to_user = None;
    let entitlement = entitlement.clone();
    entitlement_event(shared, state, event, &entitlement, extra);
    Ok(())
}

/// ACTIVE → PENDING_PLAN_CHANGE_APPROVAL, ENTITLEMENT_PLAN_CHANGE_REQUESTED with `newPlan`.
pub(crate) fn request_plan_change(
    shared: &Arc<Shared>,
    id: &str,
    plan: &str,
) -> anyhow::Result<()> {
    if !shared.config.plans.iter().any(|p| p == plan) {
        bail!("unknown plan {plan}");
    }
    transition(
        shared,
        id,
        &[Active],
        "ENTITLEMENT_PLAN_CHANGE_REQUESTED",
        |e, _| {
            e.state = PendingPlanChange;
            e.new_pending_plan = Some(plan.to_owned());
            fields([("newPlan", Some(plan.to_owned()))])
        },
    )
}

/// The billing cycle ends: an approved change in PENDING_PLAN_CHANGE applies (ACTIVE,
/// ENTITLEMENT_PLAN_CHANGED).
pub(crate) fn complete_plan_change(shared: &Arc<Shared>, id: &str) -> anyhow::Result<()> {
    let from = [EntitlementState::EntitlementPendingPlanChange];
    transition(shared, id, &from, "ENTITLEMENT_PLAN_CHANGED", |e, _| {
        e.state = Active;
        let plan = e.new_pending_plan.take();
        if let Some(plan) = &plan {
            e.plan = plan.clone();
        }
        fields([("newPlan", plan)])
    })
}

/// The buyer withdraws a pending plan change: ACTIVE, ENTITLEMENT_PLAN_CHANGE_CANCELLED.
pub(crate) fn withdraw_plan_change(shared: &Arc<Shared>, id: &str) -> anyhow::Result<()> {
    transition(
        shared,
        id,
        &[PendingPlanChange],
        "ENTITLEMENT_PLAN_CHANGE_CANCELLED",
        |e, _| {
            e.state = Active;
            fields([("newPlan", e.new_pending_plan.take())])
        },
    )
}

/// The buyer cancels (a still-requested order is aborted at once, `user-aborted`).
pub(crate) fn cancel(
    shared: &Arc<Shared>,
    id: &str,
    policy: CancellationPolicy,
) -> anyhow::Result<()> {
    let requested = shared.lock().entitlements.get(id).map(|e| e.state) == Some(Requested);
    if requested || policy == CancellationPolicy::Immediate {
        let reason = if requested {
            "user-aborted"
        } else {
            "user-cancelled"
        };
        return transition(
            shared,
            id,
            &[Requested, Active, PendingPlanChange, PendingCancellation],
            "ENTITLEMENT_CANCELLED",
            |e, now| {
                e.state = EntitlementState::EntitlementCancelled;
                e.new_pending_plan = None;
                e.cancellation_reason = Some(reason.into());
                e.subscription_end_time = Some(timestamp(now));
                fields([])
            },
        );
    }
    transition(
        shared,
        id,
        &[Active, PendingPlanChange],
        "ENTITLEMENT_PENDING_CANCELLATION",
        |e, now| {
            e.state = PendingCancellation;
            e.new_pending_plan = None;
            let end = e.offer_end_time.clone();
            e.subscription_end_time = end.or_else(|| Some(timestamp(now + Duration::days(30))));
            fields([])
        },
    )
}

/// PENDING_CANCELLATION → ACTIVE, ENTITLEMENT_CANCELLATION_REVERTED.
pub(crate) fn revert_cancellation(shared: &Arc<Shared>, id: &str) -> anyhow::Result<()> {
    transition(
        shared,
        id,
        &[PendingCancellation],
        "ENTITLEMENT_CANCELLATION_REVERTED",
        |e, _| {
            e.state = Active;
            e.subscription_end_time = None;
            fields([])
        },
    )
}

/// The term of a pending cancellation ends: CANCELLED, ENTITLEMENT_CANCELLED.
pub(crate) fn end_term(shared: &Arc<Shared>, id: &str) -> anyhow::Result<()> {
    transition(
        shared,
        id,
        &[PendingCancellation],
        "ENTITLEMENT_CANCELLED",
        |e, now| {
            e.state = EntitlementState::EntitlementCancelled;
            e.cancellation_reason = Some("user-cancelled".into());
            e.subscription_end_time = Some(timestamp(now));
            fields([])
        },
    )
}

/// The term renews until `until`: ENTITLEMENT_RENEWED (S12, S15, S16 name it).
pub(crate) fn renew(shared: &Arc<Shared>, id: &str, until: OffsetDateTime) -> anyhow::Result<()> {
    transition(shared, id, &[Active], "ENTITLEMENT_RENEWED", |e, _| {
        e.offer_end_time = Some(timestamp(until));
        fields([("newOfferEndTime", Some(timestamp(until)))])
    })
}
