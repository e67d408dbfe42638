//! Server-rendered pages: branding, the message page used for every error a buyer can meet,
//! and rendering helpers.

use askama::Template;
use axum::{
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

/// The vendor's look, from configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Branding {
    /// Shown in the header and page titles.
    pub name: String,
    /// A logo image URL (optional).
    pub logo_url: Option<String>,
    /// Accent colour for buttons and focus rings (CSS colour).
    pub accent_color: String,
    /// Where buyers can write for help (shown on confirmation pages).
    pub support_email: Option<String>,
}

impl Default for Branding {
    fn default() -> Self {
        Self {
            name: "marketlink".into(),
            logo_url: None,
            accent_color: "#1f6feb".into(),
            support_email: None,
        }
    }
}

/// Renders a template, or a plain 500 if the template itself fails.
pub fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "page could not be rendered",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub brand: Branding,
    pub title: String,
    pub explanation: String,
    pub next_steps: Vec<String>,
    pub action: Option<(String, String)>,
    /// `error` or `info`.
    pub tone: &'static str,
}

/// A page that tells a person what happened and what to do next, with an HTTP status.
#[derive(Debug, Clone)]
pub struct PageError {
    pub status: StatusCode,
    pub title: String,
    pub explanation: String,
    pub next_steps: Vec<String>,
    pub action: Option<(String, String)>,
    /// Seconds for `Retry-After` on a 429 or 503 (2 when unset).
    pub retry_after: Option<u64>,
}

impl PageError {
    pub fn new(status: StatusCode, title: &str, explanation: impl Into<String>) -> Self {
        Self {
            status,
            title: title.into(),
            explanation: explanation.into(),
            next_steps: Vec::new(),
            action: None,
            retry_after: None,
        }
    }

    /// When the client may try again (429, 503).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn step(mut self, step: impl Into<String>) -> Self {
        self.next_steps.push(step.into());
        self
    }

    pub fn action(mut self, href: impl Into<String>, label: impl Into<String>) -> Self {
        self.action = Some((href.into(), label.into()));
        self
    }

    pub fn render(self, brand: &Branding) -> Response {
        render(
            self.status,
            &MessagePage {
                brand: brand.clone(),
                title: self.title,
                explanation: self.explanation,
                next_steps: self.next_steps,
                action: self.action,
                tone: if self.status.is_client_error() || self.status.is_server_error() {
                    "error"
                } else {
                    "info"
                },
            },
        )
    }

    /// Something failed on our side; the cause goes to the log, not to the buyer.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error on a page");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong on our side",
            "We could not finish this step. The problem has been logged and our team will look at it.",
        )
        .step("Try again in a few minutes.")
    }

    /// Lets a handler return `Result<_, PageError>` and use `?`: the error travels in the
    /// response's extensions and [`render_page_errors`] draws it with the vendor's branding.
    pub fn into_page(self) -> Response {
        let mut response = self.status.into_response();
        response
            .extensions_mut()
            .insert(PendingPage(std::sync::Arc::new(self)));
        response
    }

    pub fn forbidden_form() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "For your security, forms are only accepted from the page we showed you, and this one is too old or came from elsewhere.",
        )
        .step("Go back, reload the page and submit it again.")
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        self.into_page()
    }
}

/// A [`PageError`] on its way out, waiting for [`render_page_errors`].
#[derive(Clone)]
struct PendingPage(std::sync::Arc<PageError>);

/// Middleware: renders a [`PageError`] a handler returned, with the configured branding.
pub async fn render_page_errors(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    response: Response,
) -> Response {
    match response.extensions().get::<PendingPage>() {
        Some(PendingPage(page)) => {
            let page = PageError::clone(page);
            let page_retry = page.retry_after;
            let (mut parts, _) = response.into_parts();
            let rendered = page.render(&state.settings.branding);
            // Keep what the handler set besides the page (cookies, for instance).
            let (rendered_parts, body) = rendered.into_parts();
            parts.status = rendered_parts.status;
            for (name, value) in &rendered_parts.headers {
                parts.headers.insert(name, value.clone());
            }
            parts.extensions.remove::<PendingPage>();
            if parts.status == StatusCode::SERVICE_UNAVAILABLE
                || parts.status == StatusCode::TOO_MANY_REQUESTS
            {
                // Our own overload or outage: tell clients and proxies when to come back.
                parts
                    .headers
                    .entry(axum::http::header::RETRY_AFTER)
                    .or_insert(axum::http::HeaderValue::from(page_retry.unwrap_or(2)));
            }
            Response::from_parts(parts, body)
        }
        None => response,
    }
}
