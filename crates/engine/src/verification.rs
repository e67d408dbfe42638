//! Verified sign-up addresses (issue 20, ADR 0021). A typed address reaches the vendor's
//! product as unverified (`tenant.created` says `email_verified: false` and how it will be
//! verified); once shown to be the user's, `user.email_verified` says how: `link` (the mailed
//! link was opened; needs `[email]`), `operator` (confirmed in the admin portal, the way
//! without SMTP) or `invite` (an invitation link reached the address).
//!
//! A link's token is made by the outbox worker when the mail is sent, so no token sits in the
//! queue; only its SHA-256 is stored, and it works once, for 24 hours.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use marketlink_core::{User, UserId, VerificationMethod};
use marketlink_store::{LinkUse, NewJob, QueueItem, StoreError};
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use time::Duration;

use crate::{Actor, Engine, webhooks::DeliveryError};

/// The outbox job that mails a verification link to `{ "user_id" }`.
pub const VERIFY_EMAIL_JOB: &str = "verification_email";

/// How long a mailed link works.
pub const LINK_LIFETIME: Duration = Duration::hours(24);

/// Why a verification link was refused. The messages are for the person who opened it.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("this verification link is not valid")]
    Unknown,
    #[error("this verification link has expired")]
    Expired,
    #[error("this verification link has been used already")]
    Used,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why another link was not sent.
#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    #[error("your email address is verified already")]
    AlreadyVerified,
    /// No `[email]`: the vendor's team confirms addresses instead.
    #[error("this service does not send email; the vendor's team confirms addresses")]
    NoMail,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an operator's confirmation changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("no such user")]
    NoSuchUser,
    #[error("this address is verified already")]
    AlreadyVerified,
    #[error(transparent)]
    Store(StoreError),
}

/// The SHA-256 (hex) a link's token is stored as.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// 32 bytes from the operating system's generator, URL-safe.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Engine {
    /// How a new sign-up's address will be verified: by mailed link when mail is configured,
    /// else by an operator.
    pub fn verification_method(&self) -> VerificationMethod {
        match self.mailer {
            Some(_) => VerificationMethod::Link,
            None => VerificationMethod::Operator,
        }
    }

    /// Queues a verification mail to `user`; sent (and retried) by the outbox worker.
    pub(crate) async fn queue_verification_mail(&self, user: UserId) -> Result<(), StoreError> {
        let now = self.clock.now();
        let job = NewJob {
            marketplace: "mail".into(),
            kind: VERIFY_EMAIL_JOB.into(),
            dedup_key: uuid::Uuid::now_v7().to_string(),
            payload: json!({ "user_id": user }),
            run_at: now,
        };
        self.store.outbox_enqueue(&job, now).await?;
        self.outbox_ready.notify_one();
        Ok(())
    }

    /// `user` asks for another link (the last one expired or never arrived).
    pub async fn resend_verification(&self, user: &User) -> Result<(), ResendError> {
        if user.email_verified.is_some() {
            return Err(ResendError::AlreadyVerified);
        }
        if self.mailer.is_none() {
            return Err(ResendError::NoMail);
        }
        self.queue_verification_mail(user.id).await?;
        tracing::info!(user = %user.id, "verification link requested again");
        Ok(())
    }

    /// Opens the link whose token is `token`: the address is verified by `link`, and the
    /// vendor told, the first time.
    pub async fn verify_email(&self, token: &str) -> Result<User, VerifyError> {
        let used = self
            .store
            .use_email_verification(&hash_token(token), self.clock.now())
            .await?;
        match used {
            LinkUse::Verified { user, newly } => {
                if newly {
                    tracing::info!(user = %user.id, "email address verified by link");
                    self.announce_verified(&user).await?;
                }
                Ok(*user)
            }
            LinkUse::Unknown => Err(VerifyError::Unknown),
            LinkUse::Expired => Err(VerifyError::Expired),
            LinkUse::Used => Err(VerifyError::Used),
        }
    }

    /// An operator confirms `user`'s address (audited); the vendor is told.
    pub async fn confirm_email(&self, actor: &Actor, user: UserId) -> Result<User, ConfirmError> {
        let confirmed = self
            .store
            .mark_email_verified(user, VerificationMethod::Operator, self.clock.now())
            .await;
        let user = match confirmed {
            Ok(Some(user)) => user,
            Ok(None) => return Err(ConfirmError::AlreadyVerified),
            Err(StoreError::NotFound(_)) => return Err(ConfirmError::NoSuchUser),
            Err(error) => return Err(ConfirmError::Store(error)),
        };
        self.audit(
            actor,
            "user.email_confirmed",
            Some(&user.id.to_string()),
            json!({ "email": user.email, "tenant_id": user.tenant_id }),
        )
        .await;
        self.announce_verified(&user)
            .await
            .map_err(ConfirmError::Store)?;
        Ok(user)
    }

    /// Users whose address is not verified yet, oldest first, for the operators.
    pub async fn unverified_users(&self, limit: u32) -> Result<Vec<User>, StoreError> {
        self.store.unverified_users(limit).await
    }

    /// `user.email_verified` to the vendor's product.
    pub(crate) async fn announce_verified(&self, user: &User) -> Result<(), StoreError> {
        let Some(verified) = user.email_verified else {
            return Ok(());
        };
        let at = verified
            .at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let data = json!({
            "user_id": user.id,
            "tenant_id": user.tenant_id,
            "email": user.email,
            "method": verified.method,
            "verified_at": at,
        });
        self.notify_vendor("user.email_verified", data).await
    }

    /// Sends the verification mail a job asks for, with a fresh link. Nothing is sent to a
    /// user who is gone or verified already.
    pub(crate) async fn deliver_verification_mail(
        &self,
        job: &QueueItem,
    ) -> Result<(), DeliveryError> {
        let Some(mailer) = &self.mailer else {
            return Err(DeliveryError::Permanent(
                "email is not configured ([email] smtp_url)".into(),
            ));
        };
        let user_id = job
            .payload
            .get("user_id")
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse::<uuid::Uuid>().ok())
            .ok_or_else(|| DeliveryError::Permanent("job payload has no user_id".into()))?;
        let retry = |e: StoreError| DeliveryError::Retry(e.to_string(), None);
        let user = match self.store.get_user(UserId(user_id)).await {
            Ok(user) if user.email_verified.is_none() => user,
            Ok(_) | Err(StoreError::NotFound(_)) => return Ok(()),
            Err(error) => return Err(retry(error)),
        };
        let token = new_token();
        let now = self.clock.now();
        self.store
            .create_email_verification(user.id, &hash_token(&token), now + LINK_LIFETIME, now)
            .await
            .map_err(retry)?;
        let subject = format!("Confirm your email address for {}", mailer.brand);
        mailer
            .send(&user.email, &subject, mail_body(mailer, &user, &token))
            .await
    }
}

fn mail_body(mailer: &crate::mail::Mailer, user: &User, token: &str) -> String {
    let greeting = user
        .name
        .as_deref()
        .map_or_else(|| "Hello,".to_owned(), |name| format!("Hello {name},"));
    format!(
        "{greeting}\n\nPlease confirm that {email} is your address for your {brand} account by \
         opening this link:\n\n{url}/verify-email/{token}\n\nThe link works once, for 24 hours. \
         If you did not sign up, you can ignore this message.\n\n{brand}\n",
        email = user.email,
        brand = mailer.brand,
        url = mailer.public_url,
    )
}
