//! Verified email addresses (ADR 0021): the links mailed to a user, kept only as a SHA-256 of
//! their token and used once, and marking an address verified by link, operator or invitation.

use marketlink_core::{User, UserId, VerificationMethod};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    Store, StoreError, millis, on_pool,
    users::{USER_COLUMNS, UserRow},
};

/// What opening a verification link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkUse {
    /// The link was good and is now used. `newly` is false when the address had already been
    /// verified another way (an operator, an earlier link): nothing changed but the link.
    Verified { user: Box<User>, newly: bool },
    /// No such link was ever issued (or its user is gone).
    Unknown,
    /// Issued, but past its lifetime.
    Expired,
    /// Issued and already used once.
    Used,
}

impl Store {
    /// Keeps a verification link for `user`, valid until `expires_at`.
    pub async fn create_email_verification(
        &self,
        user: UserId,
        token_hash: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO email_verifications (token_hash, user_id, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(token_hash)
            .bind(user.0)
            .bind(millis(now))
            .bind(millis(expires_at))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Uses the link whose token hashes to `token_hash`: once, before it expires. The link is
    /// spent and the address marked verified by `link` in one transaction, so two clicks at
    /// once verify once.
    pub async fn use_email_verification(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
    ) -> Result<LinkUse, StoreError> {
        let found: Option<(UserRow, bool)> = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let user: Option<Uuid> = sqlx::query_scalar(
                "UPDATE email_verifications SET used_at = $1 \
                 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING user_id",
            )
            .bind(millis(now))
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await?;
            match user {
                None => None,
                Some(user) => {
                    let newly = sqlx::query(
                        "UPDATE users SET email_verified_at = $1, email_verified_by = $2 \
                         WHERE id = $3 AND email_verified_at IS NULL",
                    )
                    .bind(millis(now))
                    .bind(VerificationMethod::Link.as_str())
                    .bind(user)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        > 0;
                    let row: UserRow =
                        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                            .bind(user)
                            .fetch_one(&mut *tx)
                            .await?;
                    tx.commit().await?;
                    Some((row, newly))
                }
            }
        });
        if let Some((row, newly)) = found {
            let (user, _) = row.into_user()?;
            return Ok(LinkUse::Verified {
                user: Box::new(user),
                newly,
            });
        }
        // Not usable: say why, so the page can tell a stale link from a forged one.
        let state: Option<(Option<i64>, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT used_at, expires_at FROM email_verifications WHERE token_hash = $1",
            )
            .bind(token_hash)
            .fetch_optional(pool)
            .await?
        });
        Ok(match state {
            None => LinkUse::Unknown,
            Some((Some(_), _)) => LinkUse::Used,
            Some((None, _)) => LinkUse::Expired,
        })
    }

    /// Marks `user`'s address verified by `method` at `now`. Returns the user as now stored
    /// when this call verified it, `None` when it was verified already (the first way stays);
    /// `NotFound` when there is no such user.
    pub async fn mark_email_verified(
        &self,
        user: UserId,
        method: VerificationMethod,
        now: OffsetDateTime,
    ) -> Result<Option<User>, StoreError> {
        let changed = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE users SET email_verified_at = $1, email_verified_by = $2 \
                 WHERE id = $3 AND email_verified_at IS NULL",
            )
            .bind(millis(now))
            .bind(method.as_str())
            .bind(user.0)
            .execute(pool)
            .await?
            .rows_affected()
        });
        let stored = self.get_user(user).await?;
        Ok((changed > 0).then_some(stored))
    }

    /// Users whose address nobody has verified yet, oldest first.
    pub async fn unverified_users(&self, limit: u32) -> Result<Vec<User>, StoreError> {
        let rows: Vec<UserRow> = on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE email_verified_at IS NULL \
                 ORDER BY created_at, id LIMIT $1"
            ))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|row| row.into_user().map(|(user, _)| user))
            .collect()
    }
}
