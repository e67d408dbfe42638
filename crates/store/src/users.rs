//! Users of the account center. Password hashes are produced and checked by the caller; the
//! store only keeps them.

use marketlink_core::{EmailVerified, Role, Tenant, TenantId, User, UserId, VerificationMethod};
use uuid::Uuid;

use crate::{Store, StoreError, from_millis, on_pool};

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: Uuid,
    tenant_id: Uuid,
    email: String,
    name: Option<String>,
    role: String,
    created_at: i64,
    password_hash: Option<String>,
    email_verified_at: Option<i64>,
    email_verified_by: Option<String>,
}

pub(crate) const USER_COLUMNS: &str = "id, tenant_id, email, name, role, created_at, password_hash, \
     email_verified_at, email_verified_by";

/// The columns `INSERT INTO users` fills, in the order [`insert_user!`] binds them.
pub(crate) const INSERT_USER: &str = "INSERT INTO users (id, tenant_id, email, name, password_hash, role, \
     created_at, email_verified_at, email_verified_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Inserts `$user` with `$password_hash` through `$executor` (a pool or an open transaction of
/// either backend), evaluating to `Result<(), StoreError>`; a taken email is a
/// [`StoreError::Conflict`].
macro_rules! insert_user {
    ($executor:expr, $user:expr, $password_hash:expr) => {
        async {
            let user: &marketlink_core::User = $user;
            sqlx::query($crate::users::INSERT_USER)
                .bind(user.id.0)
                .bind(user.tenant_id.0)
                .bind(&user.email)
                .bind(&user.name)
                .bind($password_hash)
                .bind(user.role.as_str())
                .bind($crate::millis(user.created_at))
                .bind(user.email_verified.map(|v| $crate::millis(v.at)))
                .bind(user.email_verified.map(|v| v.method.as_str()))
                .execute($executor)
                .await
                .map_err(|e| $crate::StoreError::on_unique(e, $crate::users::email_taken))?;
            Ok::<(), $crate::StoreError>(())
        }
        .await
    };
}
pub(crate) use insert_user;

impl UserRow {
    pub(crate) fn into_user(self) -> Result<(User, Option<String>), StoreError> {
        let role = Role::parse(&self.role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown role `{}`", self.role)))?;
        Ok((
            User {
                id: UserId(self.id),
                tenant_id: TenantId(self.tenant_id),
                email: self.email,
                name: self.name,
                role,
                created_at: from_millis(self.created_at)?,
                email_verified: verified(self.email_verified_at, self.email_verified_by)?,
            },
            self.password_hash,
        ))
    }
}

/// The stored pair of verification columns as a [`EmailVerified`]; both or neither are set.
fn verified(at: Option<i64>, by: Option<String>) -> Result<Option<EmailVerified>, StoreError> {
    match (at, by) {
        (Some(at), Some(by)) => Ok(Some(EmailVerified {
            method: VerificationMethod::parse(&by).ok_or_else(|| {
                StoreError::Corrupt(format!("unknown verification method `{by}`"))
            })?,
            at: from_millis(at)?,
        })),
        _ => Ok(None),
    }
}

pub(crate) fn email_taken() -> String {
    "an account with this email address already exists; sign in instead".into()
}

/// Inserts a tenant and its first user through the open transaction `$tx` (either backend),
/// evaluating to `Result<(), StoreError>`; a taken email is a [`StoreError::Conflict`].
macro_rules! insert_tenant_with_owner {
    ($tx:ident, $tenant:expr, $owner:expr, $password_hash:expr) => {
        async {
            let (tenant, owner) = ($tenant, $owner);
            sqlx::query(
                "INSERT INTO tenants (id, name, company, contact_email, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(tenant.id.0)
            .bind(&tenant.name)
            .bind(&tenant.company)
            .bind(&tenant.contact_email)
            .bind($crate::millis(tenant.created_at))
            .execute(&mut *$tx)
            .await?;
            $crate::users::insert_user!(&mut *$tx, owner, $password_hash)
        }
        .await
    };
}
pub(crate) use insert_tenant_with_owner;

impl Store {
    /// Creates a tenant and its first user together, so no tenant exists without an owner.
    pub async fn create_tenant_with_owner(
        &self,
        tenant: &Tenant,
        owner: &User,
        password_hash: Option<&str>,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            insert_tenant_with_owner!(tx, tenant, owner, password_hash)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Adds a user to an existing tenant.
    pub async fn create_user(
        &self,
        user: &User,
        password_hash: Option<&str>,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            insert_user!(pool, user, password_hash)?;
        });
        Ok(())
    }

    /// The user with this email (case-insensitive) and their password hash.
    pub async fn find_user_by_email(
        &self,
        email: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        let row: Option<UserRow> = on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE email = $1"
            ))
            .bind(email.trim().to_lowercase())
            .fetch_optional(pool)
            .await?
        });
        row.map(UserRow::into_user).transpose()
    }

    pub async fn get_user(&self, id: UserId) -> Result<User, StoreError> {
        let row: Option<UserRow> = on_pool!(self, |pool| {
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                .bind(id.0)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.ok_or(StoreError::NotFound("user"))?.into_user()?.0)
    }

    pub async fn list_users(&self, tenant: TenantId) -> Result<Vec<User>, StoreError> {
        let rows: Vec<UserRow> = on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 ORDER BY id"
            ))
            .bind(tenant.0)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|row| row.into_user().map(|(user, _)| user))
            .collect()
    }

    /// Gives a user of `tenant` another role, or removes them (`role: None`) with their
    /// pending sessions' access (pages look the user up on every request). Refused with
    /// [`StoreError::Conflict`] when the tenant would be left without an owner; the owner count
    /// is read in the same transaction (and the rows locked on PostgreSQL) so two owners
    /// demoting each other at once cannot both succeed.
    pub async fn change_user(
        &self,
        tenant: TenantId,
        user: UserId,
        role: Option<Role>,
    ) -> Result<User, StoreError> {
        // SQLite takes the write lock up front: a transaction that reads and then writes, begun
        // deferred, fails at once (SQLITE_BUSY, no busy wait) if another connection wrote in
        // between, which the workers do all the time.
        let (lock, begin) = match self.backend() {
            crate::Backend::Postgres => (" FOR UPDATE", "BEGIN"),
            crate::Backend::Sqlite => ("", "BEGIN IMMEDIATE"),
        };
        let row: UserRow = on_pool!(self, |pool| {
            let mut tx = pool.begin_with(begin).await?;
            let owners: Vec<Uuid> = sqlx::query_scalar(&format!(
                "SELECT id FROM users WHERE tenant_id = $1 AND role = 'owner'{lock}"
            ))
            .bind(tenant.0)
            .fetch_all(&mut *tx)
            .await?;
            let row: UserRow = sqlx::query_as(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND tenant_id = $2"
            ))
            .bind(user.0)
            .bind(tenant.0)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("user"))?;
            let stays_owner = role == Some(Role::Owner);
            if row.role == Role::Owner.as_str() && !stays_owner && owners.len() <= 1 {
                return Err(StoreError::Conflict(
                    marketlink_core::PeopleChangeRefused::LastOwner.to_string(),
                ));
            }
            match role {
                Some(role) => {
                    sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
                        .bind(role.as_str())
                        .bind(user.0)
                        .execute(&mut *tx)
                        .await?;
                }
                None => {
                    sqlx::query("DELETE FROM users WHERE id = $1")
                        .bind(user.0)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            row
        });
        let (mut changed, _) = row.into_user()?;
        if let Some(role) = role {
            changed.role = role;
        }
        Ok(changed)
    }
}
