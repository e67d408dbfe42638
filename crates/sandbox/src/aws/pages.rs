//! Server-rendered pages: buyer flow (choose product and offer → auto-submitting POST of
//! `x-amzn-marketplace-token` to the vendor's landing URL), agreement actions, call log, and the
//! SNS SubscribeURL.

use std::{collections::HashMap, fmt::Write as _, sync::Arc};

use axum::{
    Form, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;

use super::{AwsSandbox, DimensionKind, NotificationMode, OfferKind, state::SubscriptionAction};

pub fn routes() -> Router<Arc<AwsSandbox>> {
    Router::new()
        .route("/aws", get(index))
        .route("/aws/buyer", get(buyer))
        .route("/aws/buyer/subscribe", post(subscribe))
        .route("/aws/buyer/agreements", get(agreements))
        .route(
            "/aws/buyer/agreements/{id}/{action}",
            post(agreement_action),
        )
        .route("/aws/calls", get(calls))
}

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

pub(super) fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{t} · AWS Marketplace sandbox</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#16191f}}
nav a{{margin-right:1rem}}table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.35rem;text-align:left;font-size:.9rem}}
.card{{border:1px solid #d5dbdb;border-radius:6px;padding:1rem;margin:1rem 0}}button{{background:#ff9900;border:0;border-radius:4px;padding:.4rem .8rem;cursor:pointer}}
code{{background:#f2f3f3;padding:0 .2rem}}.muted{{color:#687078}}</style></head>
<body><nav><a href="/aws/buyer">Buy</a><a href="/aws/buyer/agreements">Agreements</a><a href="/aws/calls">Call log</a><a href="/aws/faults">Faults</a></nav>
<h1>{t}</h1>{body}<p class="muted">AWS Marketplace sandbox · not Amazon</p></body></html>"#,
        t = esc(title)
    ))
}

async fn index() -> Redirect {
    Redirect::to("/aws/buyer")
}

async fn buyer(State(sb): State<Arc<AwsSandbox>>) -> Html<String> {
    let cfg = sb.config();
    let mut body = String::new();
    let _ = write!(
        body,
        "<p>Buying as account <code>{}</code>. After you subscribe, your browser posts the registration token to <code>{}</code>; the seller is notified {} ms later.</p>",
        esc(&cfg.default_buyer_account_id),
        esc(&cfg.landing_url),
        cfg.subscribe_delay_ms
    );
    for p in &cfg.products {
        let _ = write!(
            body,
            "<div class=card><h2>{}</h2><p class=muted>Product code <code>{}</code> · identity {:?} · notifications {:?}</p><ul>",
            esc(&p.title),
            esc(&p.product_code),
            p.identity_mode,
            p.notification_mode
        );
        for d in &p.dimensions {
            let kind = match d.kind {
                DimensionKind::Metered => "per unit",
                DimensionKind::Contract => "per unit per contract",
            };
            let _ = write!(
                body,
                "<li><code>{}</code> {}: ${} {kind}</li>",
                esc(&d.name),
                esc(&d.description),
                esc(&d.price)
            );
        }
        body.push_str("</ul>");
        for o in &p.offers {
            let _ = write!(
                body,
                r#"<form method=post action="/aws/buyer/subscribe" style="margin:.4rem 0">
<input type=hidden name=product_code value="{pc}"><input type=hidden name=offer_id value="{oid}">
<input name=account_id value="{acct}" size=12 pattern="[0-9]{{12}}" title="buyer account">
<label><input type=checkbox name=fail value=1> payment fails</label>
<button>{label}</button> <span class=muted>{oid}</span></form>"#,
                pc = esc(&p.product_code),
                oid = esc(&o.id),
                acct = esc(&cfg.default_buyer_account_id),
                label = if o.channel_partner {
                    format!("{} (channel partner offer)", esc(o.kind.label()))
                } else {
                    esc(o.kind.label())
                }
            );
        }
        body.push_str("</div>");
    }
    page("Buy on AWS Marketplace (sandbox)", &body)
}

#[derive(Deserialize)]
struct SubscribeForm {
    product_code: String,
    offer_id: String,
    account_id: String,
    fail: Option<String>,
}

async fn subscribe(State(sb): State<Arc<AwsSandbox>>, Form(f): Form<SubscribeForm>) -> Response {
    let cfg = sb.config();
    let Some(product) = cfg.product(&f.product_code) else {
        return (StatusCode::BAD_REQUEST, "unknown product").into_response();
    };
    let Some(offer) = product.offers.iter().find(|o| o.id == f.offer_id) else {
        return (StatusCode::BAD_REQUEST, "unknown offer").into_response();
    };
    let purchase = match sb.purchase_offer(product, offer, f.account_id.trim()) {
        Ok(p) => p,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    sb.log_call(
        "buyer",
        "Subscribe",
        200,
        format!(
            "{} bought {} ({})",
            purchase.buyer_account_id, purchase.offer_id, purchase.agreement_id
        ),
    );
    let action = if f.fail.is_some() {
        SubscriptionAction::SubscribeFail
    } else {
        SubscriptionAction::SubscribeSuccess
    };
    let delay = std::time::Duration::from_millis(cfg.subscribe_delay_ms);
    let sb2 = sb.clone();
    let agreement_id = purchase.agreement_id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if let Err(e) = sb2.send_subscription_event(&agreement_id, action).await {
            tracing::warn!(error = %e, "subscription event failed");
        }
    });
    let trial = if purchase.offer_kind == OfferKind::FreeTrial {
        r#"<input type=hidden name="x-amzn-marketplace-offer-type" value="free-trial">"#
    } else {
        ""
    };
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("x-amzn-marketplace-token", &purchase.registration_token)
        .finish();
    crate::fuzz_seed("landing_form", form.as_bytes());
    let body = format!(
        r#"<p>Setting up your account… you are being sent to the seller's site.</p>
<form id=landing method=post action="{url}"><input type=hidden name="x-amzn-marketplace-token" value="{token}">{trial}
<noscript><button>Set up your account</button></noscript></form>
<script>document.getElementById('landing').submit()</script>"#,
        url = esc(&cfg.landing_url),
        token = esc(&purchase.registration_token)
    );
    page("Set up your account", &body).into_response()
}

async fn agreements(State(sb): State<Arc<AwsSandbox>>) -> Html<String> {
    let mut body = String::from(
        "<table><tr><th>Agreement</th><th>Product / offer</th><th>Buyer</th><th>State</th><th>Quantities</th><th>Actions</th></tr>",
    );
    for a in sb.agreements() {
        let mode = sb
            .config()
            .product(&a.product_code)
            .map(|p| p.notification_mode)
            .unwrap_or(NotificationMode::Sns);
        let qty: Vec<String> = a
            .quantities
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = write!(
            body,
            r#"<tr><td><code>{id}</code></td><td>{pc}<br><span class=muted>{offer}</span></td><td>{acct}</td><td>{state:?}, {status} ({mode:?})</td><td>{qty}</td><td>
<form method=post action="/aws/buyer/agreements/{id}/cancel"><button>Cancel (unsubscribe-pending)</button></form>
<form method=post action="/aws/buyer/agreements/{id}/finalize"><button>Finalize (unsubscribe-success)</button></form>
<form method=post action="/aws/buyer/agreements/{id}/activate"><button>Send subscribe-success</button></form>
<form method=post action="/aws/buyer/agreements/{id}/update"><input name=dimension value="seats" size=8><input name=quantity value="20" size=4><button>Change contract</button></form>
<form method=post action="/aws/buyer/agreements/{id}/renew"><label><input type=checkbox name=new_license value=1> new licence</label> <button>Renew</button></form>
<form method=post action="/aws/buyer/agreements/{id}/replace"><label><input type=checkbox name=new_license value=1> new licence</label> <button>Replace</button></form>
</td></tr>"#,
            id = esc(&a.agreement_id),
            pc = esc(&a.product_code),
            offer = esc(&a.offer_id),
            acct = esc(&a.buyer_account_id),
            state = a.state,
            status = a.agreement_status(),
            qty = esc(&qty.join(", ")),
        );
    }
    body.push_str("</table>");
    page("Agreements", &body)
}

async fn agreement_action(
    State(sb): State<Arc<AwsSandbox>>,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let result = match action.as_str() {
        "cancel" => {
            sb.send_subscription_event(&id, SubscriptionAction::UnsubscribePending)
                .await
        }
        "finalize" => {
            sb.send_subscription_event(&id, SubscriptionAction::UnsubscribeSuccess)
                .await
        }
        "activate" => {
            sb.send_subscription_event(&id, SubscriptionAction::SubscribeSuccess)
                .await
        }
        "update" => {
            let dim = f.get("dimension").cloned().unwrap_or_default();
            match f.get("quantity").and_then(|q| q.trim().parse::<i64>().ok()) {
                Some(q) => sb.update_entitlements(&id, &[(dim.as_str(), q)]).await,
                None => Err(anyhow::anyhow!("quantity must be an integer")),
            }
        }
        "renew" => sb.renew(&id, f.contains_key("new_license")).await.map(drop),
        "replace" => sb
            .replace(&id, f.contains_key("new_license"))
            .await
            .map(drop),
        _ => Err(anyhow::anyhow!("unknown action {action}")),
    };
    match result {
        Ok(()) => Redirect::to("/aws/buyer/agreements").into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn calls(State(sb): State<Arc<AwsSandbox>>) -> Html<String> {
    let mut body = String::from(
        "<table><tr><th>Time (UTC)</th><th>Service</th><th>Operation</th><th>Status</th><th>Summary</th></tr>",
    );
    for c in sb.call_log().iter().rev() {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            c.at,
            esc(&c.service),
            esc(&c.operation),
            c.status,
            esc(&c.summary)
        );
    }
    body.push_str("</table>");
    page("Call log", &body)
}

/// GET of the SubscribeURL: confirms the HTTP subscription (SNS answers with XML).
pub async fn sns_confirm(
    State(sb): State<Arc<AwsSandbox>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (Some(topic), Some(token)) = (q.get("TopicArn"), q.get("Token")) else {
        return (StatusCode::BAD_REQUEST, "TopicArn and Token are required").into_response();
    };
    match sb.confirm_subscription(topic, token).await {
        Some(arn) => (
            [(axum::http::header::CONTENT_TYPE, "text/xml")],
            format!(
                "<ConfirmSubscriptionResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><ConfirmSubscriptionResult><SubscriptionArn>{}</SubscriptionArn></ConfirmSubscriptionResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></ConfirmSubscriptionResponse>",
                esc(&arn),
                uuid::Uuid::new_v4()
            ),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "<ErrorResponse><Error><Code>NotFound</Code><Message>Subscription not found</Message></Error></ErrorResponse>").into_response(),
    }
}
