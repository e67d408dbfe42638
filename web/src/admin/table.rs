//! The portal's one page shape: a title, an optional notice and filter form, tables of rows
//! (each row with an optional one-button action), and a link to the next page.

use askama::Template;
use axum::{http::StatusCode, response::Response};

use crate::{
    AppState,
    extract::Operator,
    pages::{Branding, render},
};

/// Rows shown per page of a list.
pub(super) const PAGE: u32 = 50;

pub(super) struct Cell {
    pub text: String,
    pub href: Option<String>,
}

pub(super) fn cell(text: impl ToString) -> Cell {
    Cell {
        text: text.to_string(),
        href: None,
    }
}

pub(super) fn link(text: impl ToString, href: String) -> Cell {
    Cell {
        text: text.to_string(),
        href: Some(href),
    }
}

pub(super) struct Row {
    pub cells: Vec<Cell>,
    /// A POST target and its button label.
    pub action: Option<(String, String)>,
}

impl Row {
    pub fn new(cells: Vec<Cell>) -> Self {
        Self {
            cells,
            action: None,
        }
    }
}

/// A caption, the column headers and the rows.
pub(super) type Table = (String, Vec<&'static str>, Vec<Row>);

#[derive(Template)]
#[template(path = "admin_table.html")]
pub(super) struct TablePage {
    brand: Branding,
    csrf: String,
    title: String,
    pub notice: Option<String>,
    /// `(query name, label, current value)`.
    pub filters: Vec<(&'static str, String, String)>,
    tables: Vec<Table>,
    pub next: Option<String>,
}

impl TablePage {
    pub fn new(state: &AppState, operator: &Operator, title: &str, tables: Vec<Table>) -> Self {
        Self {
            brand: state.settings.branding.clone(),
            csrf: operator.browser.session.csrf.clone(),
            title: title.into(),
            notice: None,
            filters: Vec::new(),
            tables,
            next: None,
        }
    }

    pub fn render(&self) -> Response {
        render(StatusCode::OK, self)
    }
}

/// A timestamp in UTC to the second: operators compare it with logs, and it stays on one line.
pub(super) fn when(t: time::OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
        ))
        .unwrap_or_default()
}

pub(super) fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
