//! The browser session: one encrypted, signed, expiring cookie.
//!
//! It carries what the buyer may not forge: the purchase a marketplace resolved for them
//! (seed 000: keep the customer identifier only as a signed attribute of the session until
//! registration completes), the state of a sign-in in progress, the signed-in user, and the
//! CSRF token every form must echo.

use axum_extra::extract::{
    PrivateCookieJar,
    cookie::{Cookie, SameSite},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use marketlink_core::{BuyerIdentity, Marketplace, ResolvedPurchase, TenantId, UserId};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

pub const COOKIE: &str = "marketlink_session";
/// The cookie's name over https: browsers keep a `__Host-` cookie only if it is Secure, for
/// `/` and set by this very host, so a sibling subdomain cannot plant or shadow it.
pub const SECURE_COOKIE: &str = "__Host-marketlink_session";
/// A session ends this long after it was last written.
pub const LIFETIME: Duration = Duration::hours(12);
/// ... and this long after it began, however busy it stays.
pub const ABSOLUTE_LIFETIME: Duration = Duration::days(7);

/// What an operator's session remembers of their `[admin] users` entry: a digest of their
/// email and password hash. A session whose operator has left the list, or whose password
/// changed since, no longer matches and ends at its next request.
pub fn operator_key(email: &str, password_hash: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{}\n{password_hash}", email.to_lowercase()));
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The session cookie's name for this deployment.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure { SECURE_COOKIE } else { COOKIE }
}
/// A resolved purchase must be claimed (sign-up or link) within this time.
pub const PURCHASE_LIFETIME: Duration = Duration::hours(1);
/// A buyer sign-in must come back from the identity provider within this time.
pub const SIGN_IN_LIFETIME: Duration = Duration::minutes(10);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionUser {
    pub user_id: UserId,
    pub tenant_id: TenantId,
    pub email: String,
}

/// A purchase resolved with the marketplace, waiting for the buyer to sign up or link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingPurchase {
    pub purchase: ResolvedPurchase,
    pub expires_at: i64,
}

/// A buyer sign-in under way: the landing token waits here until the buyer comes back.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingSignIn {
    pub marketplace: Marketplace,
    pub token: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub expires_at: i64,
}

impl std::fmt::Debug for PendingSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The landing token and the PKCE verifier are bearer secrets: never in logs.
        f.debug_struct("PendingSignIn")
            .field("marketplace", &self.marketplace)
            .field("token", &"<redacted>")
            .field("pkce_verifier", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedInBuyer {
    pub marketplace: Marketplace,
    pub identity: BuyerIdentity,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub csrf: String,
    pub expires_at: i64,
    /// When the session began (Unix seconds); it ends [`ABSOLUTE_LIFETIME`] later.
    #[serde(default)]
    pub started_at: i64,
    #[serde(default)]
    pub user: Option<SessionUser>,
    #[serde(default)]
    pub purchase: Option<PendingPurchase>,
    #[serde(default)]
    pub sign_in: Option<PendingSignIn>,
    #[serde(default)]
    pub buyer: Option<SignedInBuyer>,
    /// The operator signed in to the admin portal.
    #[serde(default)]
    pub admin: Option<String>,
    /// [`operator_key`] of that operator at sign-in.
    #[serde(default)]
    pub admin_key: Option<String>,
    /// The deployment (its public URL) the session was made by: two deployments that share
    /// a session secret (staging and production, say) do not accept each other's cookies.
    #[serde(default)]
    pub deployment: Option<String>,
}

/// A form that carries only its CSRF token (buttons that post an action).
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
}

/// A URL-safe random string with `bytes` bytes of entropy from the OS-seeded CSPRNG.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

impl Session {
    fn fresh(now: OffsetDateTime) -> Self {
        Self {
            csrf: random_token(32),
            expires_at: (now + LIFETIME).unix_timestamp(),
            started_at: now.unix_timestamp(),
            user: None,
            purchase: None,
            sign_in: None,
            buyer: None,
            admin: None,
            admin_key: None,
            deployment: None,
        }
    }

    /// The session in the cookie jar, or a new one when absent, unreadable or expired. Parts
    /// past their own expiry are dropped.
    pub fn load(jar: &PrivateCookieJar, now: OffsetDateTime, secure: bool) -> Self {
        let absolute_start = (now - ABSOLUTE_LIFETIME).unix_timestamp();
        let stored = jar
            .get(cookie_name(secure))
            .and_then(|cookie| serde_json::from_str::<Session>(cookie.value()).ok())
            .filter(|session| {
                session.expires_at > now.unix_timestamp() && session.started_at > absolute_start
            });
        let mut session = stored.unwrap_or_else(|| Self::fresh(now));
        let now = now.unix_timestamp();
        if session
            .purchase
            .as_ref()
            .is_some_and(|p| p.expires_at <= now)
        {
            session.purchase = None;
        }
        if session
            .sign_in
            .as_ref()
            .is_some_and(|s| s.expires_at <= now)
        {
            session.sign_in = None;
        }
        session
    }

    /// Writes the session back, extending its lifetime.
    pub fn save(
        mut self,
        jar: PrivateCookieJar,
        now: OffsetDateTime,
        secure: bool,
    ) -> PrivateCookieJar {
        self.expires_at = (now + LIFETIME).unix_timestamp();
        let value = serde_json::to_string(&self).unwrap_or_default();
        let cookie = Cookie::build((cookie_name(secure), value))
            .http_only(true)
            .secure(secure)
            // Lax: sent on top-level navigations back from the identity provider, not on
            // cross-site sub-requests. The AWS landing POST does not need an existing session.
            .same_site(SameSite::Lax)
            .path("/")
            .max_age(LIFETIME)
            .build();
        jar.add(cookie)
    }

    /// Starts over (sign-out), keeping nothing.
    pub fn reset(now: OffsetDateTime) -> Self {
        Self::fresh(now)
    }

    /// A new CSRF token, when the session changes hands (sign-in): a token a page showed
    /// before sign-in, perhaps to someone else on a shared computer, no longer works after.
    pub fn rotate_csrf(&mut self) {
        self.csrf = random_token(32);
    }

    /// Constant-time check of the CSRF token a form sent back.
    pub fn csrf_matches(&self, submitted: &str) -> bool {
        !submitted.is_empty() && bool::from(self.csrf.as_bytes().ct_eq(submitted.as_bytes()))
    }

    pub fn hold_purchase(&mut self, purchase: ResolvedPurchase, now: OffsetDateTime) {
        self.purchase = Some(PendingPurchase {
            purchase,
            expires_at: (now + PURCHASE_LIFETIME).unix_timestamp(),
        });
    }
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;
    use axum_extra::extract::cookie::Key;
    use marketlink_core::ExternalRef;
    use time::macros::datetime;

    use super::*;

    const T0: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);

    fn purchase() -> ResolvedPurchase {
        ResolvedPurchase {
            subscription: ExternalRef {
                marketplace: Marketplace::AWS,
                external_id: "c/p".into(),
                product_code: "p".into(),
                customer_id: "c".into(),
                customer_account_id: None,
                license_arn: None,
            },
            plan_id: None,
            quantity: None,
            free_trial: false,
            term: None,
            display_name: None,
            buyer_email: None,
            aliases: Vec::new(),
            parties: Vec::new(),
        }
    }

    #[test]
    fn round_trips_through_the_encrypted_cookie_and_expires() {
        let key = Key::generate();
        let jar = PrivateCookieJar::new(key.clone());
        let mut session = Session::load(&jar, T0, true);
        session.hold_purchase(purchase(), T0);
        let csrf = session.csrf.clone();
        let jar = session.save(jar, T0, true);
        // Over https the cookie is `__Host-`: Secure, Path=/, no Domain.
        let cookie = jar.get(SECURE_COOKIE).unwrap();
        assert!(cookie.http_only().unwrap_or(false));
        assert!(cookie.secure().unwrap_or(false));
        assert_eq!(cookie.same_site(), Some(SameSite::Lax));
        assert_eq!(cookie.path(), Some("/"));
        assert_eq!(cookie.domain(), None);
        // Encrypted: neither the CSRF token nor the purchase can be read from the cookie.
        let sent = jar
            .clone()
            .into_response()
            .headers()
            .get(axum::http::header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_default();
        assert!(sent.starts_with(SECURE_COOKIE) && !sent.contains(&csrf) && !sent.contains("c/p"));
        // On plain http (a local run), not Secure (nor `__Host-`), so the browser keeps it.
        let local =
            Session::load(&jar, T0, true).save(PrivateCookieJar::new(key.clone()), T0, false);
        assert!(!local.get(COOKIE).unwrap().secure().unwrap_or(false));

        let reread = Session::load(&jar, T0 + Duration::minutes(5), true);
        assert_eq!(reread.csrf, csrf);
        assert_eq!(reread.purchase.unwrap().purchase, purchase());

        // The purchase part expires before the session does.
        let later = Session::load(&jar, T0 + PURCHASE_LIFETIME + Duration::seconds(1), true);
        assert_eq!(later.csrf, csrf);
        assert!(later.purchase.is_none());

        // After the session's lifetime, a fresh session.
        let expired = Session::load(&jar, T0 + LIFETIME + Duration::seconds(1), true);
        assert_ne!(expired.csrf, csrf);
    }

    /// A session kept busy still ends a week after it began.
    #[test]
    fn a_busy_session_ends_at_its_absolute_lifetime() {
        let key = Key::generate();
        let session = Session::fresh(T0);
        let csrf = session.csrf.clone();
        let mut jar = session.save(PrivateCookieJar::new(key.clone()), T0, false);
        let mut now = T0;
        while now < T0 + ABSOLUTE_LIFETIME - Duration::hours(11) {
            now += Duration::hours(11);
            let reloaded = Session::load(&jar, now, false);
            assert_eq!(reloaded.csrf, csrf, "still the same session at {now}");
            jar = reloaded.save(PrivateCookieJar::new(key.clone()), now, false);
        }
        let ended = Session::load(&jar, T0 + ABSOLUTE_LIFETIME + Duration::seconds(1), false);
        assert_ne!(ended.csrf, csrf);
    }

    #[test]
    fn a_forged_cookie_is_ignored() {
        // The buyer writes their own session (plain JSON, not encrypted under our key).
        let mut forged = Session::fresh(T0);
        forged.hold_purchase(purchase(), T0);
        let json = serde_json::to_string(&forged).unwrap();
        let value: String = json.bytes().map(|b| format!("%{b:02X}")).collect();
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            format!("{COOKIE}={value}").parse().unwrap(),
        );
        let jar = PrivateCookieJar::from_headers(&headers, Key::generate());
        assert!(Session::load(&jar, T0, false).purchase.is_none());
    }

    #[test]
    fn csrf_is_checked_exactly() {
        let session = Session::fresh(T0);
        assert!(session.csrf_matches(&session.csrf.clone()));
        assert!(!session.csrf_matches(""));
        assert!(!session.csrf_matches("forged"));
    }

    #[test]
    fn sign_in_secrets_never_print() {
        let pending = PendingSignIn {
            marketplace: marketlink_core::Marketplace::AZURE,
            token: "landing-token-value".into(),
            state: "state-value".into(),
            nonce: "nonce-value".into(),
            pkce_verifier: "pkce-verifier-value".into(),
            expires_at: 0,
        };
        let printed = format!("{pending:?}");
        for secret in [
            "landing-token",
            "pkce-verifier",
            "nonce-value",
            "state-value",
        ] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }
}
