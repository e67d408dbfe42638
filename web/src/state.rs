//! Application state shared by every handler.

use std::{ops::Deref, sync::Arc, time::Duration};

use axum::extract::FromRef;
use axum_extra::extract::cookie::Key;
use marketlink_engine::Engine;

use crate::pages::Branding;

/// HTTP settings the router needs.
#[derive(Clone)]
pub struct WebSettings {
    /// Encrypts and signs the session cookie. Every replica must share it.
    pub session_key: Key,
    /// Mark cookies `Secure` (https only). Off only for a plain-http local demo.
    pub secure_cookies: bool,
    pub branding: Branding,
    /// Operators allowed into the admin portal.
    pub admins: Vec<crate::admin::AdminUser>,
    /// Where buyers and marketplaces reach us, e.g. `https://billing.example.com`.
    pub public_url: String,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
    /// `GET /metrics` (Prometheus).
    pub metrics: crate::metrics::MetricsSettings,
    /// Requests per client and kind (`[rate_limits]`).
    pub rate_limits: crate::limits::RateLimits,
}

impl std::fmt::Debug for WebSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSettings")
            .field("session_key", &"<redacted>")
            .field("secure_cookies", &self.secure_cookies)
            .field("branding", &self.branding)
            .field("public_url", &self.public_url)
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("metrics", &self.metrics)
            .field("rate_limits", &self.rate_limits)
            .finish()
    }
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            session_key: Key::generate(),
            secure_cookies: false,
            branding: Branding::default(),
            admins: Vec::new(),
            public_url: "http://127.0.0.1:8080".into(),
            body_limit_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            metrics: crate::metrics::MetricsSettings {
                enabled: true,
                token: None,
                public: false,
            },
            rate_limits: crate::limits::RateLimits::default(),
        }
    }
}

/// Everything a handler may use.
pub struct App {
    /// Fulfillment use cases and the configured marketplace providers.
    pub engine: Arc<Engine>,
    /// Verified API keys (briefly cached) and their use counters.
    pub keys: crate::api_auth::KeyCache,
    pub settings: WebSettings,
    /// Sign-in attempts per account, buyers' and operators'.
    pub sign_in_attempts: crate::limits::AccountAttempts,
}

/// Cheap-to-clone handle on [`App`], used as axum state.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl App {
    /// The current time, from the engine's clock (a manual clock in tests).
    pub fn now(&self) -> time::OffsetDateTime {
        self.engine.clock.now()
    }
}

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

impl FromRef<AppState> for Key {
    fn from_ref(state: &AppState) -> Self {
        state.settings.session_key.clone()
    }
}
