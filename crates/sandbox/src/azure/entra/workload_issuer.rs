//! The sandbox as a Kubernetes cluster's OIDC issuer (`{base_url}/workload-identity`): the
//! discovery document and keys Entra reads to verify a federated token (AKS publishes the same
//! two documents at its `oidcIssuerProfile.issuerUrl`). Tokens are minted by
//! `AzureSandboxHandle::mint_federated_token`.

use axum::{extract::State, response::Response};
use serde_json::json;

use super::cached_json;
use crate::azure::{credentials::workload_issuer, http::AppState};

pub(super) async fn discovery(State(shared): State<AppState>) -> Response {
    let issuer = workload_issuer(&shared.base_url);
    cached_json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/openid/v1/jwks"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

pub(super) async fn jwks(State(shared): State<AppState>) -> Response {
    let mut keys = shared.key.jwks(&workload_issuer(&shared.base_url));
    // Kubernetes' key set carries no per-key issuer.
    if let Some(key) = keys["keys"][0].as_object_mut() {
        key.remove("issuer");
        key.remove("x5t");
    }
    cached_json(keys)
}
