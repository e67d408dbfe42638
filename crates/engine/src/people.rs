//! People in a tenant: who belongs, invitations by owners and admins (valid for 7 days,
//! stored only as the SHA-256 of their token), accepting one, and changing someone's role or
//! removing them as the viewer's role allows ([`Role::may_change`]); the store keeps at
//! least one owner.

use marketlink_core::{
    EmailVerified, PeopleChangeRefused, Role, TenantId, User, UserId, VerificationMethod,
};
use marketlink_store::{Invite, StoreError};
use time::Duration;

use crate::Engine;

/// How long an invitation link stays valid.
pub const INVITE_LIFETIME: Duration = Duration::days(7);

/// Owners and admins invite people; members do not.
pub fn may_invite(role: Role) -> bool {
    matches!(role, Role::Owner | Role::Admin)
}

/// A tenant's people and the invitations still open.
#[derive(Debug)]
pub struct People {
    pub tenant_name: String,
    pub users: Vec<User>,
    pub invites: Vec<Invite>,
}

/// An invitation that can still be accepted, with the name of the tenant it joins.
#[derive(Debug)]
pub struct OpenInvite {
    pub invite: Invite,
    pub tenant_name: String,
}

/// Why an invitation was not created. The messages are for the person inviting.
#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    #[error("only owners and admins can invite people")]
    NotAManager,
    #[error("Choose member or admin.")]
    InvalidRole,
    #[error("`{0}` is not an email address.")]
    InvalidEmail(String),
    #[error("{0} already has an account here.")]
    AlreadyHasAccount(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why someone's role was not changed.
#[derive(Debug, thiserror::Error)]
pub enum PersonChangeError {
    /// No such person in the viewer's tenant (someone of another tenant looks the same).
    #[error("no such person in this account")]
    NoSuchPerson,
    #[error(transparent)]
    Refused(#[from] PeopleChangeRefused),
    /// The store refused, e.g. to remove the last owner.
    #[error("{0}")]
    Conflict(String),
    /// The person left while the change was being made.
    #[error("the person is gone")]
    Gone,
    #[error(transparent)]
    Store(StoreError),
}

/// Why an invitation could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// Used, expired or never issued.
    #[error("the invitation cannot be used")]
    Gone,
    /// The new user's details are not acceptable (the message says why).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
}

impl Engine {
    /// The people of `tenant` and its open invitations.
    pub async fn people(&self, tenant: TenantId) -> Result<People, StoreError> {
        let now = self.clock.now();
        let (found, users, invites) = tokio::try_join!(
            self.store.get_tenant(tenant),
            self.store.list_users(tenant),
            self.store.open_invites(tenant, now),
        )?;
        Ok(People {
            tenant_name: found.name,
            users,
            invites,
        })
    }

    /// `inviter` invites `email` into their tenant as `role` (`member` or `admin`). The caller
    /// made the link's token and passes its hash.
    pub async fn invite(
        &self,
        inviter: &User,
        email: &str,
        role: &str,
        token_hash: &str,
    ) -> Result<(), InviteError> {
        if !may_invite(inviter.role) {
            return Err(InviteError::NotAManager);
        }
        let email = email.trim().to_lowercase();
        let role = match role {
            "member" => Role::Member,
            "admin" => Role::Admin,
            _ => return Err(InviteError::InvalidRole),
        };
        if !marketlink_core::tenant::looks_like_email(&email) {
            return Err(InviteError::InvalidEmail(email));
        }
        if self.store.find_user_by_email(&email).await?.is_some() {
            return Err(InviteError::AlreadyHasAccount(email));
        }
        let now = self.clock.now();
        let invite = Invite {
            tenant_id: inviter.tenant_id,
            email: email.clone(),
            role,
            invited_by: inviter.email.clone(),
            expires_at: now + INVITE_LIFETIME,
        };
        self.store.create_invite(&invite, token_hash, now).await?;
        tracing::info!(tenant = %inviter.tenant_id, invited = %email, "invitation created");
        Ok(())
    }

    /// `viewer` gives `target` of their tenant a new role, or removes them (`to: None`).
    /// Returns the person as they were.
    pub async fn change_person(
        &self,
        viewer: &User,
        target: UserId,
        to: Option<Role>,
    ) -> Result<User, PersonChangeError> {
        let person = match self.store.get_user(target).await {
            Ok(user) if user.tenant_id == viewer.tenant_id => user,
            Ok(_) | Err(StoreError::NotFound(_)) => return Err(PersonChangeError::NoSuchPerson),
            Err(error) => return Err(PersonChangeError::Store(error)),
        };
        if person.id == viewer.id {
            return Err(PeopleChangeRefused::Yourself.into());
        }
        viewer.role.may_change(person.role, to)?;
        match self
            .store
            .change_user(viewer.tenant_id, person.id, to)
            .await
        {
            Ok(_) => {}
            Err(StoreError::Conflict(message)) => return Err(PersonChangeError::Conflict(message)),
            Err(StoreError::NotFound(_)) => return Err(PersonChangeError::Gone),
            Err(error) => return Err(PersonChangeError::Store(error)),
        }
        tracing::info!(
            tenant = %viewer.tenant_id,
            by = %viewer.email,
            user = %person.email,
            role = to.map_or("removed", Role::as_str),
            "account membership changed"
        );
        // A removed person's sessions end now, on every device. Were this to fail, each would
        // still end at its next request (the signed-in user is looked up every time).
        if to.is_none()
            && let Err(error) = self.end_user_sessions(person.id).await
        {
            tracing::warn!(error = ?error, user = %person.email, "cannot end a removed person's sessions");
        }
        Ok(person)
    }

    /// The invitation whose token hashes to `token_hash`, if it can still be accepted.
    pub async fn open_invite(&self, token_hash: &str) -> Result<Option<OpenInvite>, StoreError> {
        let Some(invite) = self.store.open_invite(token_hash, self.clock.now()).await? else {
            return Ok(None);
        };
        let tenant = self.store.get_tenant(invite.tenant_id).await?;
        Ok(Some(OpenInvite {
            invite,
            tenant_name: tenant.name,
        }))
    }

    /// Accepts `invite` (found by [`Engine::open_invite`]): the invited person becomes a user
    /// named `name`, with the given password hash, their address verified by `invite` (the
    /// vendor hears `user.email_verified`). The invitation is used up.
    pub async fn accept_invite(
        &self,
        token_hash: &str,
        invite: &Invite,
        name: &str,
        password_hash: &str,
    ) -> Result<User, AcceptError> {
        let now = self.clock.now();
        let mut user = User::new(
            invite.tenant_id,
            &invite.email,
            Some(name),
            invite.role,
            now,
        )
        .map_err(|e| AcceptError::Invalid(e.to_string()))?;
        // Only the invited address received the link: opening it proves the address.
        user.email_verified = Some(EmailVerified {
            method: VerificationMethod::Invite,
            at: now,
        });
        match self
            .store
            .accept_invite(token_hash, &user, password_hash, now)
            .await
        {
            Ok(()) => {}
            Err(StoreError::NotFound(_)) => return Err(AcceptError::Gone),
            Err(StoreError::Conflict(message)) => return Err(AcceptError::Conflict(message)),
            Err(error) => return Err(AcceptError::Store(error)),
        }
        tracing::info!(tenant = %user.tenant_id, user = %user.email, "invitation accepted");
        self.announce_verified(&user)
            .await
            .map_err(AcceptError::Store)?;
        Ok(user)
    }
}
