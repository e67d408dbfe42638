//! structure-check: data
//! The matrix: one row per (method, route), one cell per persona. Requests name tenant B's real
//! ids, so every cell of a tenant-A persona is A reaching for B.
//!
//! Cells, in the order of [`PERSONAS`]: a status code; `in` for a redirect to `/signin`; `op`
//! for a redirect to `/admin/login`; alternatives joined with `/` where the answer
//! legitimately depends (say, on what an earlier row of the same persona changed).
//!
//! Placeholders in paths and bodies: `{tenant}` B's tenant id, `{sub}` B's subscription id,
//! `{member}` B's member's user id, `{key}` B's API key prefix, `{invite}` B's open invitation
//! token, `{nil}` an id nobody has, `{now}` the current time (RFC 3339).

/// The personas, in the cells' order. The last three may change B and run after B was checked
/// unchanged by all the others.
pub const PERSONAS: [&str; 10] = [
    "anonymous",
    "A member",
    "A owner",
    "B member",
    "A key usage:write",
    "A key entitlements:read",
    "A key admin",
    "vendor key admin",
    "B owner",
    "operator",
];

pub enum Body {
    None,
    /// A form with the persona's own CSRF token added (the route checks it).
    Form(&'static [(&'static str, &'static str)]),
    /// A form with no CSRF token: the route takes posts from other sites (marketplaces).
    Plain(&'static [(&'static str, &'static str)]),
    Json(&'static str),
}

pub struct Row {
    pub method: &'static str,
    pub route: &'static str,
    /// The request's path and query.
    pub path: &'static str,
    pub body: Body,
    pub cells: &'static str,
    /// The response may show B's data to anyone: the path carries a bearer link of B's.
    pub bearer_link: bool,
}

const fn row(
    method: &'static str,
    route: &'static str,
    path: &'static str,
    body: Body,
    cells: &'static str,
) -> Row {
    Row {
        method,
        route,
        path,
        body,
        cells,
        bearer_link: false,
    }
}

const fn get(route: &'static str, path: &'static str, cells: &'static str) -> Row {
    row("GET", route, path, Body::None, cells)
}

const fn form(
    route: &'static str,
    path: &'static str,
    fields: &'static [(&'static str, &'static str)],
    cells: &'static str,
) -> Row {
    row("POST", route, path, Body::Form(fields), cells)
}

const USAGE: &str =
    r#"{"subscription_id":"{sub}","dimension":"api_calls","quantity":1,"timestamp":"{now}"}"#;
const NEW_KEY: &str = r#"{"name":"matrix","scopes":["admin"],"tenant_id":"{tenant}"}"#;

/// Routes that end the persona's session: their rows come last, and a post of theirs without
/// the session's own CSRF token must leave the session as it was.
pub const ENDS_SESSION: &[&str] = &["/signout/everywhere", "/signout", "/admin/logout"];

/// Rows run in this order for each persona; the ones that end the persona's session come last.
#[rustfmt::skip]
pub const ROWS: &[Row] = &[
    // Columns: anonymous, A member, A owner, B member, A's keys (usage:write, entitlements:read,
    // admin), vendor-wide admin key, B owner, operator.
    get("/healthz", "/healthz", "200 200 200 200 200 200 200 200 200 200"),
    get("/readyz", "/readyz", "200 200 200 200 200 200 200 200 200 200"),
    get("/static/style.css", "/static/style.css", "200 200 200 200 200 200 200 200 200 200"),
    get("/api/openapi.json", "/api/openapi.json", "200 200 200 200 200 200 200 200 200 200"),
    get("/api/docs", "/api/docs", "200 200 200 200 200 200 200 200 200 200"),
    get("/metrics", "/metrics", "401 401 401 401 401 401 401 401 401 401"),
    get("/", "/", "in 303 303 303 in in in in 303 in"),
    get("/{marketplace}/landing", "/azure/landing", "400 400 400 400 400 400 400 400 400 400"),
    row("POST", "/{marketplace}/landing", "/aws/landing", Body::Plain(&[]), "400 400 400 400 400 400 400 400 400 400"),
    get("/{marketplace}/signin/callback", "/azure/signin/callback", "400 400 400 400 400 400 400 400 400 400"),
    get("/signup", "/signup", "400 400 400 400 400 400 400 400 400 400"),
    form("/signup", "/signup", &[("name", "Mallory"), ("email", "mallory@evil.example"), ("password", "correct-horse-battery")], "400 400 400 400 400 400 400 400 400 400"),
    form("/signup/link", "/signup/link", &[("email", "alice@fabrikam.example"), ("password", "wrong-password-here")], "400 400 400 400 400 400 400 400 400 400"),
    form("/signup/contact", "/signup/contact", &[("name", "Mallory"), ("email", "mallory@evil.example")], "400 400 400 400 400 400 400 400 400 400"),
    get("/signin", "/signin", "200 200 200 200 200 200 200 200 200 200"),
    // One wrong password per persona for B's owner: an account takes 10 attempts at once
    // (web/src/limits.rs), so an 11th persona would see 429 here.
    form("/signin", "/signin", &[("email", "alice@fabrikam.example"), ("password", "wrong-password-here")], "401 401 401 401 401 401 401 401 401 401"),
    get("/account", "/account", "in 200 200 200 in in in in 200 in"),
    get("/onboarding/{token}", "/onboarding/{nil}", "404 404 404 404 404 404 404 404 404 404"),
    get("/account/subscriptions/{id}", "/account/subscriptions/{sub}", "in 404 404 200 in in in in 200 in"),
    form("/account/subscriptions/{id}/plan", "/account/subscriptions/{sub}/plan", &[("plan", "basic")], "in 404 404 403 in in in in 303 in"),
    form("/account/subscriptions/{id}/quantity", "/account/subscriptions/{sub}/quantity", &[("quantity", "7")], "in 404 404 403 in in in in 303/409 in"),
    form("/account/subscriptions/{id}/cancel", "/account/subscriptions/{sub}/cancel", &[("confirm", "yes")], "in 404 404 403 in in in in 303/409 in"),
    get("/account/users", "/account/users", "in 200 200 200 in in in in 200 in"),
    form("/account/users/invite", "/account/users/invite", &[("email", "eve@acme.example"), ("role", "admin")], "in 403 201 403 in in in in 201 in"),
    form("/account/users/{id}/role", "/account/users/{member}/role", &[("role", "owner")], "in 404 404 403 in in in in 200 in"),
    form("/account/users/{id}/remove", "/account/users/{member}/remove", &[], "in 404 404 403 in in in in 200 in"),
    Row {
        bearer_link: true,
        ..get("/invite/{token}", "/invite/{invite}", "200 200 200 200 200 200 200 200 200 200")
    },
    // The invitation link is the credential; a bad password shows no one gets past the form.
    Row {
        bearer_link: true,
        ..form("/invite/{token}", "/invite/{invite}", &[("name", "Mallory"), ("password", "short")], "422 422 422 422 422 422 422 422 422 422")
    },
    // The mailed link is the credential; nobody holds a forged one.
    get("/verify-email/{token}", "/verify-email/{nil}", "404 404 404 404 404 404 404 404 404 404"),
    form("/account/verify-email", "/account/verify-email", &[], "in 303 303 303 in in in in 303 in"),
    get("/api/v1/check", "/api/v1/check?tenant={tenant}&product=analytics&feature=dashboards", "401 401 401 401 403 404 404 200 401 401"),
    get("/api/v1/tenants/{id}/entitlements", "/api/v1/tenants/{tenant}/entitlements", "401 401 401 401 403 404 404 200 401 401"),
    row("POST", "/api/v1/usage", "/api/v1/usage", Body::Json(USAGE), "401 401 401 401 404 403 404 202 401 401"),
    get("/api/v1/tenants", "/api/v1/tenants?q=fabrikam", "401 401 401 401 403 403 200 200 401 401"),
    get("/api/v1/tenants/{id}", "/api/v1/tenants/{tenant}", "401 401 401 401 403 403 404 200 401 401"),
    get("/api/v1/api-keys", "/api/v1/api-keys", "401 401 401 401 403 403 200 200 401 401"),
    row("POST", "/api/v1/api-keys", "/api/v1/api-keys", Body::Json(NEW_KEY), "401 401 401 401 403 403 404 201 401 401"),
    row("DELETE", "/api/v1/api-keys/{prefix}", "/api/v1/api-keys/{key}", Body::None, "401 401 401 401 403 403 404 200 401 401"),
    get("/admin/login", "/admin/login", "200 200 200 200 200 200 200 200 200 200"),
    form("/admin/login", "/admin/login", &[("email", "intruder@vendor.example"), ("password", "wrong-password-here")], "401 401 401 401 401 401 401 401 401 401"),
    get("/admin", "/admin", "op op op op op op op op op 200"),
    get("/admin/tenants", "/admin/tenants", "op op op op op op op op op 200"),
    get("/admin/subscriptions", "/admin/subscriptions", "op op op op op op op op op 200"),
    get("/admin/subscriptions/{id}", "/admin/subscriptions/{sub}", "op op op op op op op op op 200"),
    get("/admin/dead", "/admin/dead", "op op op op op op op op op 200"),
    form("/admin/dead/{queue}/{id}/retry", "/admin/dead/inbox/{nil}/retry", &[], "op op op op op op op op op 404"),
    get("/admin/onboarding", "/admin/onboarding", "op op op op op op op op op 200"),
    form("/admin/onboarding/{id}/approve", "/admin/onboarding/{nil}/approve", &[], "op op op op op op op op op 409"),
    form("/admin/onboarding/{id}/decline", "/admin/onboarding/{nil}/decline", &[("reason", "matrix")], "op op op op op op op op op 409"),
    get("/admin/usage", "/admin/usage", "op op op op op op op op op 200"),
    get("/admin/api-keys", "/admin/api-keys", "op op op op op op op op op 200"),
    form("/admin/api-keys", "/admin/api-keys", &[("name", "matrix"), ("scope", "admin"), ("tenant", "{tenant}")], "op op op op op op op op op 201"),
    form("/admin/api-keys/{prefix}/revoke", "/admin/api-keys/{key}/revoke", &[], "op op op op op op op op op 303"),
    get("/admin/verifications", "/admin/verifications", "op op op op op op op op op 200"),
    form("/admin/verifications/{id}/confirm", "/admin/verifications/{nil}/confirm", &[], "op op op op op op op op op 404"),
    get("/admin/audit", "/admin/audit", "op op op op op op op op op 200"),
    get("/admin/webhooks", "/admin/webhooks", "op op op op op op op op op 200"),
    form("/admin/webhooks/{id}/replay", "/admin/webhooks/{nil}/replay", &[], "op op op op op op op op op 404"),
    row("POST", "/aws/sns", "/aws/sns", Body::Json("{}"), "401 401 401 401 401 401 401 401 401 401"),
    row("POST", "/aws/events", "/aws/events", Body::Json("{}"), "401 401 401 401 401 401 401 401 401 401"),
    row("POST", "/azure/webhook", "/azure/webhook", Body::Json("{}"), "401 401 401 401 401 401 401 401 401 401"),
    // These end the persona's session. Ending every session of a buyer takes a buyer.
    form("/signout/everywhere", "/signout/everywhere", &[], "in in in in in in in in in in"),
    form("/signout", "/signout", &[], "in in in in in in in in in in"),
    form("/admin/logout", "/admin/logout", &[], "op op op op op op op op op op"),
];
