//! The authorization matrix (issue 20): every route the server mounts, read from the code so a
//! new route without a row fails here, called by every persona (anonymous, member and owner of
//! tenant A, member and owner of tenant B, API keys of each scope, the operator) with tenant
//! B's real ids; each cell is the status that persona must get ([`table`]). Tenant A never
//! reads or changes anything of B: no answer to anyone outside B shows B's ids or people, and
//! B's subscription, people, invitations, keys and usage are the same after everyone but B's
//! owner, a vendor-wide admin key and the operator has had their go. Forms are posted with the
//! persona's own CSRF token, so a cell is about authorization; each form a persona may post is
//! also posted without a token and with another session's, which must be refused.

mod routes;
mod setup;
mod table;

use std::{collections::BTreeSet, time::Instant};

use reqwest::Method;
use setup::{Persona, TenantB, World};
use table::{Body, ENDS_SESSION, PERSONAS, ROWS, Row};

/// What a persona got: a cell token (`in`, `op` or the status) and the body.
struct Observed {
    cell: String,
    body: String,
}

/// Which CSRF token a form carries.
enum Csrf {
    Own,
    Missing,
    Foreign(String),
}

fn fill(text: &str, b: &TenantB) -> String {
    let now = setup::now()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    text.replace("{tenant}", &b.tenant.to_string())
        .replace("{sub}", &b.subscription.to_string())
        .replace("{member}", &b.member)
        .replace("{key}", &b.key_prefix)
        .replace("{invite}", &b.invite_token)
        .replace("{nil}", "0190b5a0-0000-7000-8000-000000000000")
        .replace("{now}", &now)
}

/// The CSRF token of `persona`'s session, from a page that carries it.
async fn csrf_of(world: &World, persona: &Persona) -> Option<String> {
    for page in [persona.csrf_page, "/signin"] {
        let html = persona
            .client
            .get(format!("{}{page}", world.stack.app_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let marker = "name=\"csrf\" value=\"";
        if let Some(at) = html.find(marker) {
            let rest = &html[at + marker.len()..];
            return rest.split('"').next().map(str::to_owned);
        }
    }
    None
}

async fn send(world: &World, persona: &Persona, row: &Row, csrf: Csrf) -> Observed {
    let url = format!("{}{}", world.stack.app_url, fill(row.path, &world.b));
    let method = Method::from_bytes(row.method.as_bytes()).unwrap();
    let mut request = persona.client.request(method, url);
    if let Some(key) = &persona.key {
        request = request.bearer_auth(key);
    }
    let fields = |fields: &[(&str, &str)]| -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), fill(v, &world.b)))
            .collect()
    };
    request = match &row.body {
        Body::None => request,
        Body::Plain(plain) => request.form(&fields(plain)),
        Body::Json(json) => request
            .header("content-type", "application/json")
            .body(fill(json, &world.b)),
        Body::Form(form) => {
            let mut form = fields(form);
            let token = match csrf {
                Csrf::Own => csrf_of(world, persona).await,
                Csrf::Missing => None,
                Csrf::Foreign(token) => Some(token),
            };
            if let Some(token) = token {
                form.insert(0, ("csrf".into(), token));
            }
            request.form(&form)
        }
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let cell = match (status, location.as_str()) {
        (303, "/signin") => "in".to_owned(),
        (303, "/admin/login") => "op".to_owned(),
        _ => status.to_string(),
    };
    Observed {
        cell,
        body: response.text().await.unwrap_or_default(),
    }
}

/// The cells a row expects of persona `p`.
fn expected(row: &Row, p: usize) -> Vec<&'static str> {
    let cells: Vec<&str> = row.cells.split_whitespace().collect();
    cells[p].split('/').collect()
}

/// B's ids and people, which no answer to someone outside B may show (unless the request
/// itself named them).
fn leaks(world: &World, row: &Row, request: &str, body: &str) -> Vec<String> {
    if row.bearer_link {
        return Vec::new();
    }
    let b = &world.b;
    [
        setup::B_OWNER.to_owned(),
        setup::B_MEMBER.to_owned(),
        setup::B_INVITED.to_owned(),
        b.tenant.to_string(),
        b.subscription.to_string(),
        b.member.clone(),
        b.key_prefix.clone(),
        b.invite_token.clone(),
    ]
    .into_iter()
    .filter(|secret| !request.contains(secret.as_str()) && body.contains(secret.as_str()))
    .collect()
}

/// Runs every row as persona `p`; records what it got and every cell that differs.
async fn column(world: &World, p: usize, seen: &mut [Vec<String>], failures: &mut Vec<String>) {
    let persona = &world.personas[p];
    for (r, row) in ROWS.iter().enumerate() {
        let observed = send(world, persona, row, Csrf::Own).await;
        let want = expected(row, p);
        if !want.contains(&observed.cell.as_str()) {
            failures.push(format!(
                "{} {} as {}: expected {}, got {}",
                row.method,
                row.route,
                persona.name,
                want.join("/"),
                observed.cell
            ));
        }
        let request = format!(
            "{} {:?}",
            fill(row.path, &world.b),
            body_text(row, &world.b)
        );
        let leaked = leaks(world, row, &request, &observed.body);
        if !persona.sees_b && !leaked.is_empty() {
            failures.push(format!(
                "{} {} as {}: the answer shows B's {leaked:?}",
                row.method, row.route, persona.name
            ));
        }
        seen[r][p] = observed.cell;
    }
}

fn body_text(row: &Row, b: &TenantB) -> String {
    match &row.body {
        Body::None => String::new(),
        Body::Form(f) | Body::Plain(f) => f.iter().map(|(_, v)| fill(v, b)).collect(),
        Body::Json(json) => fill(json, b),
    }
}

/// Every form a persona gets past authorization with, and every sign-out, posted without a
/// CSRF token and with another session's: both must be refused, and every persona must still
/// be signed in afterwards.
async fn csrf_checks(world: &World, failures: &mut Vec<String>) -> usize {
    let stranger = Persona {
        name: "stranger",
        client: marketlink_e2e::browser(),
        key: None,
        csrf_page: "/signin",
        rightful: false,
        sees_b: false,
    };
    let foreign = csrf_of(world, &stranger).await.unwrap();
    let mut checked = 0;
    for row in ROWS.iter().filter(|r| matches!(r.body, Body::Form(_))) {
        for (p, persona) in world.personas.iter().enumerate() {
            let refused = ["in", "op", "401", "403", "404"];
            let ends_session = ENDS_SESSION.contains(&row.route);
            if !ends_session && expected(row, p).iter().any(|c| refused.contains(c)) {
                continue;
            }
            for csrf in [Csrf::Missing, Csrf::Foreign(foreign.clone())] {
                let observed = send(world, persona, row, csrf).await;
                checked += 1;
                // A sign-out refused for want of a session redirects to its sign-in page;
                // that the session survived is checked below.
                let refusals: &[&str] = if ends_session {
                    &["403", "422", "op", "in"]
                } else {
                    &["400", "403", "422"]
                };
                if !refusals.contains(&observed.cell.as_str()) {
                    failures.push(format!(
                        "{} {} as {} without its own CSRF token: got {}",
                        row.method, row.route, persona.name, observed.cell
                    ));
                }
            }
        }
    }
    for persona in &world.personas {
        let home = persona
            .client
            .get(format!("{}{}", world.stack.app_url, persona.csrf_page))
            .send()
            .await
            .unwrap();
        if home.status() != reqwest::StatusCode::OK {
            failures.push(format!(
                "{} is no longer signed in after posts without its CSRF token",
                persona.name
            ));
        }
    }
    checked
}

/// The matrix as observed, in the table's layout, to compare or paste.
fn render(seen: &[Vec<String>]) -> String {
    ROWS.iter()
        .zip(seen)
        .map(|(row, cells)| format!("{:6} {:42} {}", row.method, row.route, cells.join(" ")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Rows missing for mounted routes, and rows for routes no longer mounted.
async fn coverage(world: &World) -> Vec<String> {
    let mounted = routes::mounted(&world.stack).await;
    let rows: BTreeSet<routes::Route> = ROWS
        .iter()
        .map(|r| (r.method.to_owned(), r.route.to_owned()))
        .collect();
    let mut problems: Vec<String> = mounted
        .difference(&rows)
        .map(|(m, r)| {
            format!("no row for {m} {r}: add one to tests/journeys/authz_matrix/table.rs")
        })
        .collect();
    problems.extend(
        rows.difference(&mounted)
            .map(|(m, r)| format!("a row for {m} {r}, which the server no longer mounts")),
    );
    for row in ROWS {
        let cells = row.cells.split_whitespace().count();
        if cells != PERSONAS.len() {
            problems.push(format!(
                "{} {} has {cells} cells for {} personas",
                row.method,
                row.route,
                PERSONAS.len()
            ));
        }
    }
    problems
}

#[tokio::test]
async fn every_route_answers_every_persona_as_the_matrix_says() {
    let world = setup::world().await;
    let names: Vec<&str> = world.personas.iter().map(|p| p.name).collect();
    assert_eq!(names, PERSONAS, "the personas, in the cells' order");
    let problems = coverage(&world).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let started = Instant::now();
    let before = setup::snapshot(&world.stack, &world.b).await;
    let mut seen = vec![vec![String::new(); PERSONAS.len()]; ROWS.len()];
    let mut failures = Vec::new();
    let (outsiders, rightful): (Vec<usize>, Vec<usize>) =
        (0..PERSONAS.len()).partition(|p| !world.personas[*p].rightful);
    // First, while every persona is signed in: forms without the session's own token.
    let csrf_checked = csrf_checks(&world, &mut failures).await;
    for p in outsiders {
        column(&world, p, &mut seen, &mut failures).await;
    }
    let after = setup::snapshot(&world.stack, &world.b).await;
    if after != before {
        failures.push(format!(
            "tenant B changed at the hands of others:\nbefore:\n{before}\nafter:\n{after}"
        ));
    }
    // The same requests from those who may: what others were refused works for them.
    for p in rightful {
        column(&world, p, &mut seen, &mut failures).await;
    }
    println!(
        "authorization matrix: {} routes x {} personas = {} cells, and {csrf_checked} forms \
         without their own CSRF token, in {:.1?}\n{}",
        ROWS.len(),
        PERSONAS.len(),
        ROWS.len() * PERSONAS.len(),
        started.elapsed(),
        render(&seen)
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}\n\nobserved:\n{}",
        failures.len(),
        failures.join("\n"),
        render(&seen)
    );
}
