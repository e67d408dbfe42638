//! People in a tenant: the list, invitations by owners and admins (a link shown once, valid
//! for 7 days, stored only as a SHA-256), role changes and removals, and accepting an
//! invitation. Who may do what is the engine's rule (`marketlink_engine::people`); these
//! handlers parse forms and draw pages.

use crate::session::SavedSession;
use askama::Template;
use axum::{
    Form, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use marketlink_core::{Role, User, UserId};
use marketlink_engine::people::{
    AcceptError, InviteError, OpenInvite, PersonChangeError, may_invite,
};
use serde::Deserialize;

use crate::{
    AppState,
    api_auth::hash_secret,
    extract::{Browser, SignedIn},
    pages::{Branding, PageError, render},
    password,
    session::{CsrfForm, SessionUser, random_token},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/account/users", get(users_page))
        .route("/account/users/invite", post(invite))
        .route("/account/users/{id}/role", post(change_role))
        .route("/account/users/{id}/remove", post(remove))
        .route("/invite/{token}", get(accept_page).post(accept))
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    brand: Branding,
    csrf: String,
    tenant_name: String,
    users: Vec<Person>,
    invites: Vec<(String, String, String)>,
    can_invite: bool,
    invite_link: Option<String>,
    notice: Option<String>,
    error: Option<String>,
}

/// One row of the people table, with what the viewer may do to it.
struct Person {
    id: String,
    email: String,
    name: String,
    role: &'static str,
    /// Roles the viewer may give this person (empty: no change offered).
    roles: Vec<&'static str>,
    removable: bool,
}

impl Person {
    fn new(viewer: &User, person: User) -> Self {
        let yourself = viewer.id == person.id;
        let roles = if yourself {
            Vec::new()
        } else {
            [Role::Owner, Role::Admin, Role::Member]
                .into_iter()
                .filter(|to| viewer.role.may_change(person.role, Some(*to)).is_ok())
                .map(Role::as_str)
                .collect()
        };
        Self {
            id: person.id.0.to_string(),
            removable: !yourself && viewer.role.may_change(person.role, None).is_ok(),
            email: person.email,
            name: person.name.unwrap_or_default(),
            role: person.role.as_str(),
            roles: if roles.len() > 1 { roles } else { Vec::new() },
        }
    }
}

/// What the people page says above the list.
enum Message {
    None,
    /// An invitation was created: its link, shown this once.
    InviteLink(String),
    Notice(String),
    Error(String),
}

/// The people page of `me`'s tenant, with `message`, answered with `status`.
async fn people_page(
    state: &AppState,
    signed_in: &SignedIn,
    status: StatusCode,
    message: Message,
) -> Result<Response, PageError> {
    let me = &signed_in.user;
    let people = state
        .engine
        .people(me.tenant_id)
        .await
        .map_err(|e| PageError::internal(&e))?;
    let (invite_link, notice, error) = match message {
        Message::None => (None, None, None),
        Message::InviteLink(link) => (Some(link), None, None),
        Message::Notice(notice) => (None, Some(notice), None),
        Message::Error(error) => (None, None, Some(error)),
    };
    let invites = people
        .invites
        .into_iter()
        .map(|i| {
            let expires = i.expires_at.date().to_string();
            (i.email, i.role.as_str().to_owned(), expires)
        })
        .collect();
    let page = UsersPage {
        brand: state.settings.branding.clone(),
        csrf: signed_in.browser.session.csrf.clone(),
        tenant_name: people.tenant_name,
        users: people
            .users
            .into_iter()
            .map(|u| Person::new(me, u))
            .collect(),
        invites,
        can_invite: may_invite(me.role),
        invite_link,
        notice,
        error,
    };
    Ok(render(status, &page))
}

async fn users_page(
    State(state): State<AppState>,
    signed_in: SignedIn,
) -> Result<Response, PageError> {
    people_page(&state, &signed_in, StatusCode::OK, Message::None).await
}

#[derive(Deserialize)]
struct InviteForm {
    csrf: String,
    email: String,
    role: String,
}

async fn invite(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Form(form): Form<InviteForm>,
) -> Result<Response, PageError> {
    if !signed_in.browser.session.csrf_matches(&form.csrf) {
        return Err(PageError::forbidden_form());
    }
    let token = random_token(32);
    let invited = state
        .engine
        .invite(
            &signed_in.user,
            &form.email,
            &form.role,
            &hash_secret(&token),
        )
        .await;
    let (status, message) = match invited {
        Ok(()) => {
            let public_url = state.settings.public_url.trim_end_matches('/');
            let link = format!("{public_url}/invite/{token}");
            (StatusCode::CREATED, Message::InviteLink(link))
        }
        Err(InviteError::NotAManager) => {
            return Err(PageError::new(
                StatusCode::FORBIDDEN,
                "Only owners and admins can invite people",
                "Ask an owner or admin of your account to invite them.",
            ));
        }
        Err(error @ (InviteError::InvalidRole | InviteError::InvalidEmail(_))) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Message::Error(error.to_string()),
        ),
        Err(error @ InviteError::AlreadyHasAccount(_)) => {
            (StatusCode::CONFLICT, Message::Error(error.to_string()))
        }
        Err(InviteError::Store(error)) => return Err(PageError::internal(&error)),
    };
    people_page(&state, &signed_in, status, message).await
}

#[derive(Deserialize)]
struct RoleForm {
    csrf: String,
    role: String,
}

async fn change_role(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<RoleForm>,
) -> Result<Response, PageError> {
    let Some(role) = Role::parse(&form.role) else {
        return Err(PageError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unknown role",
            format!(
                "`{}` is not a role: choose owner, admin or member.",
                form.role
            ),
        ));
    };
    change_person(&state, &signed_in, &id, &form.csrf, Some(role)).await
}

async fn remove(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    change_person(&state, &signed_in, &id, &form.csrf, None).await
}

fn no_such_person(explanation: &str) -> PageError {
    PageError::new(StatusCode::NOT_FOUND, "No such person", explanation)
        .action("/account/users", "Back to people")
}

/// Gives someone of the viewer's tenant a new role, or removes them (`to: None`).
async fn change_person(
    state: &AppState,
    signed_in: &SignedIn,
    id: &str,
    csrf: &str,
    to: Option<Role>,
) -> Result<Response, PageError> {
    if !signed_in.browser.session.csrf_matches(csrf) {
        return Err(PageError::forbidden_form());
    }
    let target = uuid::Uuid::parse_str(id)
        .map(UserId)
        .map_err(|_| no_such_person("The link is incomplete."))?;
    let changed = state
        .engine
        .change_person(&signed_in.user, target, to)
        .await;
    let (status, message) = match changed {
        Ok(person) => {
            let notice = match to {
                Some(role) => format!("{} is now {}.", person.email, role.as_str()),
                None => format!("{} was removed from the account.", person.email),
            };
            (StatusCode::OK, Message::Notice(notice))
        }
        // Someone of another tenant, or no one: the same answer, so ids reveal nothing.
        Err(PersonChangeError::NoSuchPerson) => {
            return Err(no_such_person(
                "This person is not part of your account (any more).",
            ));
        }
        Err(PersonChangeError::Refused(refusal)) => {
            (StatusCode::FORBIDDEN, Message::Error(refusal.to_string()))
        }
        Err(PersonChangeError::Conflict(message)) => {
            (StatusCode::CONFLICT, Message::Error(message))
        }
        Err(PersonChangeError::Gone) => return Ok(Redirect::to("/account/users").into_response()),
        Err(PersonChangeError::Store(error)) => return Err(PageError::internal(&error)),
    };
    people_page(state, signed_in, status, message).await
}

#[derive(Template)]
#[template(path = "invite.html")]
struct AcceptPage {
    brand: Branding,
    csrf: String,
    tenant_name: String,
    email: String,
    role: String,
    error: Option<String>,
}

impl AcceptPage {
    fn new(state: &AppState, browser: &Browser, open: &OpenInvite, error: Option<String>) -> Self {
        Self {
            brand: state.settings.branding.clone(),
            csrf: browser.session.csrf.clone(),
            tenant_name: open.tenant_name.clone(),
            email: open.invite.email.clone(),
            role: open.invite.role.as_str().into(),
            error,
        }
    }
}

fn invite_gone() -> PageError {
    PageError::new(
        StatusCode::GONE,
        "This invitation cannot be used",
        "It was already used, it expired (invitations last 7 days), or the link is incomplete.",
    )
    .step("Ask the person who invited you for a new invitation.")
}

async fn open(state: &AppState, token: &str) -> Result<OpenInvite, PageError> {
    state
        .engine
        .open_invite(&hash_secret(token))
        .await
        .map_err(|e| PageError::internal(&e))?
        .ok_or_else(invite_gone)
}

async fn accept_page(
    State(state): State<AppState>,
    browser: Browser,
    Path(token): Path<String>,
) -> Result<(SavedSession, Response), PageError> {
    let open = open(&state, &token).await?;
    let page = AcceptPage::new(&state, &browser, &open, None);
    Ok((browser.save(&state), render(StatusCode::OK, &page)))
}

#[derive(Deserialize)]
struct AcceptForm {
    csrf: String,
    name: String,
    password: String,
}

async fn accept(
    State(state): State<AppState>,
    mut browser: Browser,
    Path(token): Path<String>,
    Form(form): Form<AcceptForm>,
) -> Result<(SavedSession, Response), PageError> {
    if !browser.session.csrf_matches(&form.csrf) {
        return Err(PageError::forbidden_form());
    }
    let open = open(&state, &token).await?;
    let again = |status, message: String| {
        let page = AcceptPage::new(&state, &browser, &open, Some(message));
        render(status, &page)
    };
    if let Err(message) = password::check_strength(&form.password) {
        let page = again(StatusCode::UNPROCESSABLE_ENTITY, message);
        return Ok((browser.unsaved(), page));
    }
    let hash = password::hash(form.password.clone()).await?;
    let accepted = state
        .engine
        .accept_invite(&hash_secret(&token), &open.invite, &form.name, &hash)
        .await;
    let user = match accepted {
        Ok(user) => user,
        Err(AcceptError::Gone) => return Err(invite_gone()),
        Err(AcceptError::Invalid(message)) => {
            let page = again(StatusCode::UNPROCESSABLE_ENTITY, message);
            return Ok((browser.unsaved(), page));
        }
        Err(AcceptError::Conflict(message)) => {
            let page = again(StatusCode::CONFLICT, message);
            return Ok((browser.unsaved(), page));
        }
        Err(AcceptError::Store(error)) => return Err(PageError::internal(&error)),
    };
    browser.changes_hands();
    browser.session.user = Some(SessionUser {
        user_id: user.id,
        tenant_id: user.tenant_id,
        email: user.email,
    });
    Ok((
        browser.save(&state),
        Redirect::to("/account").into_response(),
    ))
}
