//! Invitations to join a tenant's account center.

use marketlink_core::{Role, TenantId, User};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Store, StoreError, from_millis, millis, on_pool};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invite {
    pub tenant_id: TenantId,
    pub email: String,
    pub role: Role,
    pub invited_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct InviteRow {
    tenant_id: Uuid,
    email: String,
    role: String,
    invited_by: String,
    expires_at: i64,
}

impl InviteRow {
    fn into_invite(self) -> Result<Invite, StoreError> {
        Ok(Invite {
            tenant_id: TenantId(self.tenant_id),
            email: self.email,
            role: Role::parse(&self.role)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown role `{}`", self.role)))?,
            invited_by: self.invited_by,
            expires_at: from_millis(self.expires_at)?,
        })
    }
}

impl Store {
    pub async fn create_invite(
        &self,
        invite: &Invite,
        token_hash: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO user_invites (token_hash, tenant_id, email, role, invited_by, \
                 created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(token_hash)
            .bind(invite.tenant_id.0)
            .bind(&invite.email)
            .bind(invite.role.as_str())
            .bind(&invite.invited_by)
            .bind(millis(now))
            .bind(millis(invite.expires_at))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// An invitation that can still be accepted (not used, not expired).
    pub async fn open_invite(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Invite>, StoreError> {
        let row: Option<InviteRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT tenant_id, email, role, invited_by, expires_at FROM user_invites \
                 WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > $2",
            )
            .bind(token_hash)
            .bind(millis(now))
            .fetch_optional(pool)
            .await?
        });
        row.map(InviteRow::into_invite).transpose()
    }

    /// Pending invitations of a tenant.
    pub async fn open_invites(
        &self,
        tenant: TenantId,
        now: OffsetDateTime,
    ) -> Result<Vec<Invite>, StoreError> {
        let rows: Vec<InviteRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT tenant_id, email, role, invited_by, expires_at FROM user_invites \
                 WHERE tenant_id = $1 AND accepted_at IS NULL AND expires_at > $2 \
                 ORDER BY created_at",
            )
            .bind(tenant.0)
            .bind(millis(now))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(InviteRow::into_invite).collect()
    }

    /// Uses the invitation once and creates its user, together. A second use, or an
    /// expired invitation, is `NotFound`; an email that already has an account, `Conflict`.
    pub async fn accept_invite(
        &self,
        token_hash: &str,
        user: &User,
        password_hash: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let used = sqlx::query(
                "UPDATE user_invites SET accepted_at = $1 \
                 WHERE token_hash = $2 AND accepted_at IS NULL AND expires_at > $1",
            )
            .bind(millis(now))
            .bind(token_hash)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if used == 0 {
                return Err(StoreError::NotFound("invitation"));
            }
            crate::users::insert_user!(&mut *tx, user, password_hash)?;
            tx.commit().await?;
        });
        Ok(())
    }
}
