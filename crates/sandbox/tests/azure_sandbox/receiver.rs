//! The vendor's webhook endpoint: records each call and answers with scripted statuses.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, extract::State, http::HeaderMap, routing::post};
use serde_json::{Value, json};
use uuid::Uuid;

/// (Authorization header, body) of each webhook call received.
type Calls = Arc<Mutex<Vec<(Option<String>, Value)>>>;

#[derive(Clone, Default)]
pub struct Receiver {
    pub calls: Calls,
    /// Statuses to answer with, in order; 200 once exhausted.
    pub script: Arc<Mutex<Vec<u16>>>,
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    r.calls.lock().unwrap().push((auth, body));
    let mut script = r.script.lock().unwrap();
    let status = if script.is_empty() {
        200
    } else {
        script.remove(0)
    };
    axum::http::StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    pub async fn start() -> (Self, String) {
        let receiver = Receiver::default();
        let app = Router::new()
            .route("/azure/webhook", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/azure/webhook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    pub fn script(&self, statuses: &[u16]) {
        *self.script.lock().unwrap() = statuses.to_vec();
    }

    pub fn calls(&self) -> Vec<(Option<String>, Value)> {
        self.calls.lock().unwrap().clone()
    }

    /// Waits until a webhook for `operation` arrived.
    pub async fn wait_for(&self, operation: Uuid) -> (Option<String>, Value) {
        for _ in 0..500 {
            if let Some(call) = self
                .calls()
                .into_iter()
                .find(|(_, b)| b["id"] == json!(operation))
            {
                return call;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no webhook for operation {operation}");
    }
}
