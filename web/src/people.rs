//! People in a tenant: the list, invitations by owners and admins (a link shown once, valid
//! for 7 days, stored only as a SHA-256), and accepting one.

use askama::Template;
use axum::{
    Form, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use axum_extra::extract::PrivateCookieJar;
use marketlink_core::{PeopleChangeRefused, Role, User, UserId};
use marketlink_store::{Invite, StoreError};
use serde::Deserialize;
use time::Duration;

use crate::{
    AppState,
    api_auth::hash_secret,
    pages::{Branding, PageError, render},
    password,
    session::{Session, SessionUser, current_user, random_token},
};

const INVITE_LIFETIME: Duration = Duration::days(7);

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

async fn render_users(
    state: &AppState,
    session: &Session,
    me: &User,
    invite_link: Option<String>,
    notice: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let brand = &state.settings.branding;
    let now = state.clock.now();
    let (tenant, users, invites) = match (
        state.store.get_tenant(me.tenant_id).await,
        state.store.list_users(me.tenant_id).await,
        state.store.open_invites(me.tenant_id, now).await,
    ) {
        (Ok(t), Ok(u), Ok(i)) => (t, u, i),
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => {
            return PageError::internal(&e).render(brand);
        }
    };
    render(
        status,
        &UsersPage {
            brand: brand.clone(),
            csrf: session.csrf.clone(),
            tenant_name: tenant.name,
            users: users.into_iter().map(|u| Person::new(me, u)).collect(),
            invites: invites
                .into_iter()
                .map(|i| {
                    (
                        i.email,
                        i.role.as_str().to_owned(),
                        i.expires_at.date().to_string(),
                    )
                })
                .collect(),
            can_invite: matches!(me.role, Role::Owner | Role::Admin),
            invite_link,
            notice,
            error,
        },
    )
}

async fn users_page(State(state): State<AppState>, jar: PrivateCookieJar) -> Response {
    let session = Session::load(&jar, state.clock.now());
    let me = match current_user(&state.store, &session).await {
        Ok(Some(me)) => me,
        Ok(None) => return Redirect::to("/signin").into_response(),
        Err(e) => return PageError::internal(&e).render(&state.settings.branding),
    };
    render_users(&state, &session, &me, None, None, None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct InviteForm {
    csrf: String,
    email: String,
    role: String,
}

async fn invite(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Form(form): Form<InviteForm>,
) -> Response {
    let brand = &state.settings.branding;
    let session = Session::load(&jar, state.clock.now());
    if !session.csrf_matches(&form.csrf) {
        return PageError::forbidden_form().render(brand);
    }
    let me = match current_user(&state.store, &session).await {
        Ok(Some(me)) if matches!(me.role, Role::Owner | Role::Admin) => me,
        Ok(None) => return Redirect::to("/signin").into_response(),
        Ok(_) => {
            return PageError::new(
                StatusCode::FORBIDDEN,
                "Only owners and admins can invite people",
                "Ask an owner or admin of your account to invite them.",
            )
            .render(brand);
        }
        Err(e) => return PageError::internal(&e).render(brand),
    };
    let email = form.email.trim().to_lowercase();
    let role = match form.role.as_str() {
        "member" => Role::Member,
        "admin" => Role::Admin,
        _ => {
            let message = "Choose member or admin.".to_owned();
            return render_users(
                &state,
                &session,
                &me,
                None,
                None,
                Some(message),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    if !marketlink_core::tenant::looks_like_email(&email) {
        let message = format!("`{email}` is not an email address.");
        return render_users(
            &state,
            &session,
            &me,
            None,
            None,
            Some(message),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    match state.store.find_user_by_email(&email).await {
        Ok(Some(_)) => {
            let message = format!("{email} already has an account here.");
            return render_users(
                &state,
                &session,
                &me,
                None,
                None,
                Some(message),
                StatusCode::CONFLICT,
            )
            .await;
        }
        Ok(None) => {}
        Err(e) => return PageError::internal(&e).render(brand),
    }
    let now = state.clock.now();
    let token = random_token(32);
    let invite = Invite {
        tenant_id: me.tenant_id,
        email: email.clone(),
        role,
        invited_by: me.email.clone(),
        expires_at: now + INVITE_LIFETIME,
    };
    if let Err(e) = state
        .store
        .create_invite(&invite, &hash_secret(&token), now)
        .await
    {
        return PageError::internal(&e).render(brand);
    }
    tracing::info!(tenant = %me.tenant_id, invited = %email, "invitation created");
    let link = format!(
        "{}/invite/{token}",
        state.settings.public_url.trim_end_matches('/')
    );
    render_users(
        &state,
        &session,
        &me,
        Some(link),
        None,
        None,
        StatusCode::CREATED,
    )
    .await
}

#[derive(Deserialize)]
struct RoleForm {
    csrf: String,
    role: String,
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn change_role(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Path(id): Path<String>,
    Form(form): Form<RoleForm>,
) -> Response {
    let role = Role::parse(&form.role);
    if role.is_none() {
        return PageError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unknown role",
            format!(
                "`{}` is not a role: choose owner, admin or member.",
                form.role
            ),
        )
        .render(&state.settings.branding);
    }
    change_person(&state, &jar, &id, &form.csrf, role).await
}

async fn remove(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    change_person(&state, &jar, &id, &form.csrf, None).await
}

/// Gives someone of the viewer's tenant a new role, or removes them (`to: None`), if the
/// viewer's role allows it; the store keeps at least one owner.
async fn change_person(
    state: &AppState,
    jar: &PrivateCookieJar,
    id: &str,
    csrf: &str,
    to: Option<Role>,
) -> Response {
    let brand = &state.settings.branding;
    let session = Session::load(jar, state.clock.now());
    if !session.csrf_matches(csrf) {
        return PageError::forbidden_form().render(brand);
    }
    let me = match current_user(&state.store, &session).await {
        Ok(Some(me)) => me,
        Ok(None) => return Redirect::to("/signin").into_response(),
        Err(e) => return PageError::internal(&e).render(brand),
    };
    let (session, viewer) = (&session, &me);
    let refused = |status, message: String| async move {
        render_users(state, session, viewer, None, None, Some(message), status).await
    };
    // Someone of another tenant, or no one: the same answer, so ids reveal nothing.
    let target = match uuid::Uuid::parse_str(id) {
        Ok(uuid) => match state.store.get_user(UserId(uuid)).await {
            Ok(user) if user.tenant_id == me.tenant_id => user,
            Ok(_) | Err(StoreError::NotFound(_)) => {
                return PageError::new(
                    StatusCode::NOT_FOUND,
                    "No such person",
                    "This person is not part of your account (any more).",
                )
                .action("/account/users", "Back to people")
                .render(brand);
            }
            Err(e) => return PageError::internal(&e).render(brand),
        },
        Err(_) => {
            return PageError::new(
                StatusCode::NOT_FOUND,
                "No such person",
                "The link is incomplete.",
            )
            .action("/account/users", "Back to people")
            .render(brand);
        }
    };
    if target.id == me.id {
        return refused(
            StatusCode::FORBIDDEN,
            PeopleChangeRefused::Yourself.to_string(),
        )
        .await;
    }
    if let Err(refusal) = me.role.may_change(target.role, to) {
        return refused(StatusCode::FORBIDDEN, refusal.to_string()).await;
    }
    match state.store.change_user(me.tenant_id, target.id, to).await {
        Ok(_) => {}
        Err(StoreError::Conflict(message)) => return refused(StatusCode::CONFLICT, message).await,
        Err(StoreError::NotFound(_)) => return Redirect::to("/account/users").into_response(),
        Err(e) => return PageError::internal(&e).render(brand),
    }
    let notice = match to {
        Some(role) => format!("{} is now {}.", target.email, role.as_str()),
        None => format!("{} was removed from the account.", target.email),
    };
    tracing::info!(
        tenant = %me.tenant_id,
        by = %me.email,
        user = %target.email,
        role = to.map_or("removed", Role::as_str),
        "account membership changed"
    );
    render_users(
        state,
        session,
        viewer,
        None,
        Some(notice),
        None,
        StatusCode::OK,
    )
    .await
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

fn invite_gone() -> PageError {
    PageError::new(
        StatusCode::GONE,
        "This invitation cannot be used",
        "It was already used, it expired (invitations last 7 days), or the link is incomplete.",
    )
    .step("Ask the person who invited you for a new invitation.")
}

async fn open(state: &AppState, token: &str) -> Result<(Invite, String), PageError> {
    let invite = state
        .store
        .open_invite(&hash_secret(token), state.clock.now())
        .await
        .map_err(|e| PageError::internal(&e))?
        .ok_or_else(invite_gone)?;
    let tenant = state
        .store
        .get_tenant(invite.tenant_id)
        .await
        .map_err(|e| PageError::internal(&e))?;
    Ok((invite, tenant.name))
}

async fn accept_page(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Path(token): Path<String>,
) -> (PrivateCookieJar, Response) {
    let session = Session::load(&jar, state.clock.now());
    let (invite, tenant_name) = match open(&state, &token).await {
        Ok(found) => found,
        Err(page) => return (jar, page.render(&state.settings.branding)),
    };
    let page = AcceptPage {
        brand: state.settings.branding.clone(),
        csrf: session.csrf.clone(),
        tenant_name,
        email: invite.email,
        role: invite.role.as_str().into(),
        error: None,
    };
    let jar = session.save(jar, state.clock.now(), state.settings.secure_cookies);
    (jar, render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
struct AcceptForm {
    csrf: String,
    name: String,
    password: String,
}

async fn accept(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Path(token): Path<String>,
    Form(form): Form<AcceptForm>,
) -> (PrivateCookieJar, Response) {
    let brand = &state.settings.branding;
    let mut session = Session::load(&jar, state.clock.now());
    if !session.csrf_matches(&form.csrf) {
        return (jar, PageError::forbidden_form().render(brand));
    }
    let (invite, tenant_name) = match open(&state, &token).await {
        Ok(found) => found,
        Err(page) => return (jar, page.render(brand)),
    };
    let again = |message: String| AcceptPage {
        brand: brand.clone(),
        csrf: session.csrf.clone(),
        tenant_name: tenant_name.clone(),
        email: invite.email.clone(),
        role: invite.role.as_str().into(),
        error: Some(message),
    };
    if let Err(message) = password::check_strength(&form.password) {
        return (
            jar,
            render(StatusCode::UNPROCESSABLE_ENTITY, &again(message)),
        );
    }
    let now = state.clock.now();
    let user = match User::new(
        invite.tenant_id,
        &invite.email,
        Some(&form.name),
        invite.role,
        now,
    ) {
        Ok(user) => user,
        Err(e) => {
            return (
                jar,
                render(StatusCode::UNPROCESSABLE_ENTITY, &again(e.to_string())),
            );
        }
    };
    let hash = match password::hash(form.password.clone()).await {
        Ok(hash) => hash,
        Err(e) => return (jar, PageError::internal(&e).render(brand)),
    };
    match state
        .store
        .accept_invite(&hash_secret(&token), &user, &hash, now)
        .await
    {
        Ok(()) => {}
        Err(StoreError::NotFound(_)) => return (jar, invite_gone().render(brand)),
        Err(StoreError::Conflict(message)) => {
            return (jar, render(StatusCode::CONFLICT, &again(message)));
        }
        Err(e) => return (jar, PageError::internal(&e).render(brand)),
    }
    tracing::info!(tenant = %user.tenant_id, user = %user.email, "invitation accepted");
    session.user = Some(SessionUser {
        user_id: user.id,
        tenant_id: user.tenant_id,
        email: user.email,
    });
    let jar = session.save(jar, now, state.settings.secure_cookies);
    (jar, Redirect::to("/account").into_response())
}
