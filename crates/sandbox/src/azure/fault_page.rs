//! The fault switch over HTTP: `GET /sandbox/faults` lists the faults of the scenario and of
//! this page with what each caught (`?format=json` for scripts), `POST /sandbox/faults`
//! switches one on, `POST /sandbox/faults/{id}/stop` and `POST /sandbox/faults/stop` stop one
//! or all. No sign-in, like every sandbox page: the sandbox is a loopback test tool. Faults
//! never catch `/sandbox/` pages, so a `*` fault can still be stopped here.

use std::collections::HashMap;

use axum::{
    Form, Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};

use super::{
    http::{AppState, esc, html},
    pages::{STYLE, nav},
};
use crate::switch::{FaultForm, Side, page_body};

const BASE: &str = "/sandbox/faults";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(BASE, get(list).post(start))
        .route("/sandbox/faults/stop", post(stop_all))
        .route("/sandbox/faults/{id}/stop", post(stop))
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    html(
        status,
        format!(
            "<!doctype html><meta charset=\"utf-8\"><title>{title} · Azure Marketplace sandbox</title>{STYLE}{}<h1>{title}</h1>{body}",
            nav()
        ),
    )
}

async fn list(
    State(shared): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let views = shared.switches.list(shared.now());
    if query.get("format").map(String::as_str) == Some("json") {
        return Json(views).into_response();
    }
    let body = page_body(&views, BASE, Side::Microsoft, esc);
    page(StatusCode::OK, "Faults", &body)
}

async fn start(State(shared): State<AppState>, Form(form): Form<FaultForm>) -> Response {
    match form.fault(Side::Microsoft) {
        Ok(fault) => {
            shared.switches.start(fault, shared.now());
            Redirect::to(BASE).into_response()
        }
        Err(error) => page(
            StatusCode::BAD_REQUEST,
            "Fault not started",
            &format!("<p class=\"err\">{}</p>", esc(&error)),
        ),
    }
}

async fn stop(State(shared): State<AppState>, Path(id): Path<u64>) -> Response {
    if shared.switches.stop(id) {
        Redirect::to(BASE).into_response()
    } else {
        (StatusCode::NOT_FOUND, format!("no fault #{id}")).into_response()
    }
}

async fn stop_all(State(shared): State<AppState>) -> Redirect {
    shared.switches.stop_all();
    Redirect::to(BASE)
}
