//! The fault switch over HTTP: `GET /aws/faults` lists the faults of the scenario and of this
//! page with what each caught (`?format=json` for scripts), `POST /aws/faults` switches one
//! on, `POST /aws/faults/{id}/stop` and `POST /aws/faults/stop` stop one or all. No sign-in,
//! like every sandbox page: the sandbox is a loopback test tool.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Form, Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};

use super::{
    AwsSandbox,
    pages::{esc, page},
};
use crate::switch::{FaultForm, Side, page_body};

const BASE: &str = "/aws/faults";

pub fn routes() -> Router<Arc<AwsSandbox>> {
    Router::new()
        .route(BASE, get(list).post(start))
        .route("/aws/faults/stop", post(stop_all))
        .route("/aws/faults/{id}/stop", post(stop))
}

async fn list(
    State(sb): State<Arc<AwsSandbox>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let views = sb.faults();
    if query.get("format").map(String::as_str) == Some("json") {
        return Json(views).into_response();
    }
    page("Faults", &page_body(&views, BASE, Side::Aws, esc)).into_response()
}

async fn start(State(sb): State<Arc<AwsSandbox>>, Form(form): Form<FaultForm>) -> Response {
    match form.fault(Side::Aws) {
        Ok(fault) => {
            let id = sb.switches.start(fault, sb.now());
            sb.log_call("sandbox", "FaultStarted", 200, format!("fault #{id}"));
            Redirect::to(BASE).into_response()
        }
        Err(error) => (
            StatusCode::BAD_REQUEST,
            page("Fault not started", &format!("<p>{}</p>", esc(&error))),
        )
            .into_response(),
    }
}

async fn stop(State(sb): State<Arc<AwsSandbox>>, Path(id): Path<u64>) -> Response {
    if sb.switches.stop(id) {
        Redirect::to(BASE).into_response()
    } else {
        (StatusCode::NOT_FOUND, format!("no fault #{id}")).into_response()
    }
}

async fn stop_all(State(sb): State<Arc<AwsSandbox>>) -> Redirect {
    sb.switches.stop_all();
    Redirect::to(BASE)
}
