//! Fault switches for the Google sandbox (`crate::switch`, `Side::Google`): a fault matches a
//! suffix of the request path (`:report`, `/token`, `:pull`...) or `*`, and answers in Google's
//! error shape: `429` is RESOURCE_EXHAUSTED, `5xx` INTERNAL, `unavailable` 503 UNAVAILABLE (the
//! google.rpc.Code HTTP mapping), `reset` closes the connection, `late` answers late. The page
//! `/sandbox/gcp/faults` lists, starts and stops them (`?format=json` for scripts); faults never
//! catch `/sandbox/` pages, so a `*` fault can still be stopped there.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    Form, Json, Router,
    extract::{Path, Query, Request, State},
    http::{HeaderValue, StatusCode},
    middleware::Next,
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};

use super::{Shared, errors::GoogleError};
use crate::switch::{FaultForm, FaultKind, Side, page_body};

const BASE: &str = "/sandbox/gcp/faults";

/// Middleware: answers a matching call with its fault instead of the real answer.
pub(crate) async fn apply(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if path.starts_with("/sandbox/") {
        return next.run(request).await;
    }
    let Some(fault) = shared
        .switches
        .hit(shared.clock.now(), |m| path.ends_with(m))
    else {
        return next.run(request).await;
    };
    let error = |http, status, message: &str| GoogleError {
        http,
        status,
        message: message.into(),
    };
    match fault.kind {
        FaultKind::Reset => crate::outage::reset(),
        FaultKind::Late => {
            let response = next.run(request).await;
            tokio::time::sleep(Duration::from_millis(fault.late_ms.unwrap_or(0))).await;
            response
        }
        FaultKind::ServerError => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "Internal error encountered.",
        )
        .into_response(),
        FaultKind::Unavailable => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The service is currently unavailable.",
        )
        .into_response(),
        // Validation turns `throttling` away for Google; both mean quota exhaustion here.
        FaultKind::TooManyRequests | FaultKind::Throttling => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded.",
            )
            .into_response();
            if let Some(secs) = fault.retry_after_secs {
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from(secs));
            }
            response
        }
    }
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(BASE, get(list).post(start))
        .route("/sandbox/gcp/faults/stop", post(stop_all))
        .route("/sandbox/gcp/faults/{id}/stop", post(stop))
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><meta charset=\"utf-8\"><title>{title} · Google Cloud Marketplace sandbox</title>\
         <p><a href=\"/sandbox/gcp/buyer\">Buyer</a> · <a href=\"{BASE}\">Faults</a></p><h1>{title}</h1>{body}"
    );
    (status, Html(html)).into_response()
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let views = shared.switches.list(shared.clock.now());
    if query.get("format").map(String::as_str) == Some("json") {
        return Json(views).into_response();
    }
    page(
        StatusCode::OK,
        "Faults",
        &page_body(&views, BASE, Side::Google, super::pages::esc),
    )
}

async fn start(State(shared): State<Arc<Shared>>, Form(form): Form<FaultForm>) -> Response {
    match form.fault(Side::Google) {
        Ok(fault) => {
            shared.switches.start(fault, shared.clock.now());
            Redirect::to(BASE).into_response()
        }
        Err(error) => {
            let body = format!("<p class=\"err\">{}</p>", super::pages::esc(&error));
            page(StatusCode::BAD_REQUEST, "Fault not started", &body)
        }
    }
}

async fn stop(State(shared): State<Arc<Shared>>, Path(id): Path<u64>) -> Response {
    if shared.switches.stop(id) {
        Redirect::to(BASE).into_response()
    } else {
        (StatusCode::NOT_FOUND, format!("no fault #{id}")).into_response()
    }
}

async fn stop_all(State(shared): State<Arc<Shared>>) -> Redirect {
    shared.switches.stop_all();
    Redirect::to(BASE)
}
