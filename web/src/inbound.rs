//! Notification endpoints, mounted from what each provider declares (`/aws/sns`,
//! `/azure/webhook`, ...): authenticate, store durably, then answer. Marketplaces retry a 5xx,
//! and SNS over HTTP retries nothing else (a 4xx is dropped, or parked in a dead-letter queue
//! if the subscription has one), so a 4xx goes only to a message that is forged (401) or
//! malformed (400). One we cannot take for our own reasons —
//! the database is down, the topic or product is not configured yet, the SNS certificate could
//! not be fetched — is answered 503, never dropped.

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use marketlink_core::InboundMessage;
use marketlink_engine::{ReceiveError, Received};
use serde_json::json;

use crate::AppState;

pub fn routes(state: &AppState) -> Router<AppState> {
    let mut router = Router::new();
    for provider in state.engine.providers.iter() {
        let marketplace = provider.marketplace().to_string();
        for endpoint in provider.inbound_endpoints() {
            let marketplace = marketplace.clone();
            let channel = endpoint.channel;
            router = router.route(
                endpoint.path,
                post(
                    move |state: State<AppState>, headers: HeaderMap, body: Bytes| {
                        receive(state, marketplace, channel, headers, body)
                    },
                ),
            );
        }
    }
    router
}

async fn receive(
    State(state): State<AppState>,
    marketplace: String,
    channel: &'static str,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let message = InboundMessage {
        channel: channel.to_owned(),
        headers: headers
            .iter()
            .filter_map(|(name, value)| {
                value
                    .to_str()
                    .ok()
                    .map(|v| (name.as_str().to_ascii_lowercase(), v.to_owned()))
            })
            .collect(),
        body: body.to_vec(),
    };
    match state.engine.receive(&marketplace, &message).await {
        Ok(Received::Stored(id)) => (
            StatusCode::OK,
            Json(json!({ "status": "stored", "id": id })),
        )
            .into_response(),
        Ok(Received::Duplicate(id)) => (
            StatusCode::OK,
            Json(json!({ "status": "duplicate", "id": id })),
        )
            .into_response(),
        // The reason is logged (by the engine, or here); the sender gets a short generic one,
        // so a prober learns nothing of our checks or configuration.
        Err(ReceiveError::Rejected(_)) => error(
            StatusCode::UNAUTHORIZED,
            "rejected",
            "the message could not be authenticated",
        ),
        Err(ReceiveError::Malformed(_)) => error(
            StatusCode::BAD_REQUEST,
            "malformed",
            "the message is not in the expected format",
        ),
        Err(ReceiveError::NotConfigured(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_configured",
            "this message cannot be taken yet; send it again later",
        ),
        Err(ReceiveError::UnknownMarketplace(_)) => {
            error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        }
        Err(ReceiveError::Unavailable(reason)) => {
            tracing::warn!(%marketplace, %channel, %reason, "inbound message answered 503");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "temporarily unavailable; send it again later",
            )
        }
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}
