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
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub title: String,
    pub explanation: String,
    pub next_steps: Vec<String>,
    pub action: Option<(String, String)>,
}

impl PageError {
    pub fn new(status: StatusCode, title: &str, explanation: impl Into<String>) -> Self {
        Self {
            status,
            title: title.into(),
            explanation: explanation.into(),
            next_steps: Vec::new(),
            action: None,
        }
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

    pub fn forbidden_form() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "For your security, forms are only accepted from the page we showed you, and this one is too old or came from elsewhere.",
        )
        .step("Go back, reload the page and submit it again.")
    }
}
