//! Application state shared by every handler.

use std::{ops::Deref, sync::Arc, time::Duration};

use marketlink_core::Clock;
use marketlink_store::Store;

/// HTTP settings the router needs.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// Where buyers and marketplaces reach us, e.g. `https://billing.example.com`.
    pub public_url: String,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8080".into(),
            body_limit_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Everything a handler may use.
pub struct App {
    /// The database.
    pub store: Store,
    /// The time source (a manual clock in tests).
    pub clock: Arc<dyn Clock>,
    pub settings: WebSettings,
}

/// Cheap-to-clone handle on [`App`], used as axum state.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl AppState {
    pub fn new(app: App) -> Self {
        Self(Arc::new(app))
    }
}

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}
