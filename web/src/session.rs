//! The browser session, kept server-side (`web_sessions`, ADR 0019): the cookie, encrypted
//! and signed, carries only a random session id, so ending a session in the database ends it
//! on every device that holds a copy of the cookie.
//!
//! The session holds what the buyer may not forge: the purchase a marketplace resolved for
//! them (seed 000: keep the customer identifier only as an attribute of the session until
//! registration completes), the state of a sign-in in progress, the signed-in user, and the
//! CSRF token every form must echo.

pub(crate) mod persist;

pub use persist::{SavedSession, store_saved, unavailable};

use axum_extra::extract::{
    PrivateCookieJar,
    cookie::{Cookie, SameSite},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use marketlink_core::{BuyerIdentity, Marketplace, ResolvedPurchase, TenantId, UserId};
use marketlink_store::SessionRecord;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

pub const COOKIE: &str = "marketlink_session";
/// The cookie's name over https: browsers keep a `__Host-` cookie only if it is Secure, for
/// `/` and set by this very host, so a sibling subdomain cannot plant or shadow it.
pub const SECURE_COOKIE: &str = "__Host-marketlink_session";
/// A signed-in session ends this long after it was last used.
pub const LIFETIME: Duration = Duration::hours(12);
/// ... and an anonymous one (no user, no operator) this long: a flood of anonymous visits
/// cannot fill the table for half a day.
pub const ANONYMOUS_LIFETIME: Duration = Duration::hours(1);
/// A session used again is written back only to extend its expiry once the stored expiry is
/// this far behind: not a database write per page view.
pub const REFRESH_AFTER: Duration = Duration::seconds(60);
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
    /// When the session began (Unix seconds); it ends [`ABSOLUTE_LIFETIME`] later.
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
    /// a database and a session secret do not accept each other's sessions.
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

/// A new session id: 256 random bits.
pub fn new_id() -> String {
    random_token(32)
}

/// What the database knows a session by: the SHA-256 (hex) of its id. The id itself is
/// only ever in the browser's cookie.
pub fn id_hash(id: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The session id this browser's cookie carries, if the cookie decrypts and looks like one.
pub fn cookie_id(jar: &PrivateCookieJar, secure: bool) -> Option<String> {
    jar.get(cookie_name(secure))
        .map(|cookie| cookie.value().to_owned())
        .filter(|id| {
            id.len() == 43
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The jar with the session cookie set to `id`, kept by the browser for `lifetime`.
pub fn with_cookie(
    jar: PrivateCookieJar,
    id: String,
    secure: bool,
    lifetime: Duration,
) -> PrivateCookieJar {
    let cookie = Cookie::build((cookie_name(secure), id))
        .http_only(true)
        .secure(secure)
        // Lax: sent on top-level navigations back from the identity provider, not on
        // cross-site sub-requests. The AWS landing POST does not need an existing session.
        .same_site(SameSite::Lax)
        .path("/")
        .max_age(lifetime)
        .build();
    jar.add(cookie)
}

/// The jar telling the browser to drop its session cookie.
pub fn without_cookie(jar: PrivateCookieJar, secure: bool) -> PrivateCookieJar {
    jar.remove(Cookie::build(cookie_name(secure)).path("/").build())
}

impl Session {
    pub fn fresh(now: OffsetDateTime) -> Self {
        Self {
            csrf: random_token(32),
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

    /// A session read back from the database (begun at `started_at`), or `None` when it
    /// does not parse or is past its absolute lifetime. Parts past their own expiry are
    /// dropped.
    pub fn from_stored(
        data: &str,
        started_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Option<Self> {
        if started_at + ABSOLUTE_LIFETIME <= now {
            return None;
        }
        let mut session: Session = serde_json::from_str(data).ok()?;
        session.started_at = started_at.unix_timestamp();
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
        Some(session)
    }

    /// How long the session lasts unused: shorter while nobody is signed in.
    pub fn idle_lifetime(&self) -> Duration {
        if self.user.is_some() || self.admin.is_some() {
            LIFETIME
        } else {
            ANONYMOUS_LIFETIME
        }
    }

    /// When the session ends if it is used at `now` and not again: its idle lifetime on, but
    /// never past its absolute lifetime.
    pub fn expiry(&self, now: OffsetDateTime) -> OffsetDateTime {
        let started = OffsetDateTime::from_unix_timestamp(self.started_at).unwrap_or(now);
        (now + self.idle_lifetime()).min(started + ABSOLUTE_LIFETIME)
    }

    /// The row that stores this session under `id_hash`; `None` if it cannot be written as
    /// JSON (it always can: plain strings and numbers).
    pub fn record(&self, id_hash: String, now: OffsetDateTime) -> Option<SessionRecord> {
        let data = serde_json::to_string(self).ok()?;
        Some(SessionRecord {
            id_hash,
            data,
            user_id: self.user.as_ref().map(|u| u.user_id),
            tenant_id: self.user.as_ref().map(|u| u.tenant_id),
            operator: self.admin.as_ref().map(|a| a.to_lowercase()),
            started_at: OffsetDateTime::from_unix_timestamp(self.started_at).unwrap_or(now),
            expires_at: self.expiry(now),
        })
    }

    /// Whether `record` (this session as it would be written now) adds nothing to what is
    /// stored (`data`, expiring at `expires_at`) worth a write: the same data, and an expiry
    /// less than [`REFRESH_AFTER`] later.
    pub fn nothing_to_write(
        record: &SessionRecord,
        data: &str,
        expires_at: OffsetDateTime,
    ) -> bool {
        record.data == data && record.expires_at - expires_at < REFRESH_AFTER
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

    fn set_cookie(jar: PrivateCookieJar) -> String {
        jar.into_response()
            .headers()
            .get(axum::http::header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_default()
    }

    #[test]
    fn the_cookie_carries_only_the_encrypted_session_id() {
        let key = Key::generate();
        let id = new_id();
        let jar = with_cookie(
            PrivateCookieJar::new(key.clone()),
            id.clone(),
            true,
            LIFETIME,
        );
        // Over https the cookie is `__Host-`: Secure, Path=/, no Domain.
        let cookie = jar.get(SECURE_COOKIE).unwrap();
        assert!(cookie.http_only().unwrap_or(false));
        assert!(cookie.secure().unwrap_or(false));
        assert_eq!(cookie.same_site(), Some(SameSite::Lax));
        assert_eq!(cookie.path(), Some("/"));
        assert_eq!(cookie.domain(), None);
        assert_eq!(cookie_id(&jar, true).as_deref(), Some(id.as_str()));
        // Encrypted: the id cannot be read off the wire, and the session's data is not there.
        let sent = set_cookie(jar);
        assert!(
            sent.starts_with(SECURE_COOKIE) && !sent.contains(&id),
            "{sent}"
        );
        // The database keeps a digest of the id, never the id.
        let hash = id_hash(&id);
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&id));
        assert_eq!(hash, id_hash(&id));

        // On plain http (a local run), not Secure (nor `__Host-`), so the browser keeps it.
        let local = with_cookie(
            PrivateCookieJar::new(key.clone()),
            id.clone(),
            false,
            LIFETIME,
        );
        assert!(!local.get(COOKIE).unwrap().secure().unwrap_or(false));
        // The browser sends it back; signing out tells the browser to drop it.
        let sent = set_cookie(local);
        let mut headers = axum::http::HeaderMap::new();
        let pair = sent.split(';').next().unwrap_or_default();
        headers.insert(axum::http::header::COOKIE, pair.parse().unwrap());
        let returned = PrivateCookieJar::from_headers(&headers, key);
        assert_eq!(cookie_id(&returned, false).as_deref(), Some(id.as_str()));
        let out = set_cookie(without_cookie(returned, false));
        assert!(
            out.starts_with(&format!("{COOKIE}=;")) && out.contains("Max-Age=0"),
            "{out}"
        );
    }

    #[test]
    fn a_stored_session_reads_back_and_its_parts_expire() {
        let mut session = Session::fresh(T0);
        session.hold_purchase(purchase(), T0);
        let record = session.record(id_hash("id"), T0).unwrap();
        assert_eq!(record.started_at, T0);
        assert!(!record.data.contains("\"id\""), "no id in the data");
        let reread = Session::from_stored(&record.data, T0, T0 + Duration::minutes(5)).unwrap();
        assert_eq!(reread, session);

        // The purchase part expires before the session does.
        let later = T0 + PURCHASE_LIFETIME + Duration::seconds(1);
        let reread = Session::from_stored(&record.data, T0, later).unwrap();
        assert_eq!(reread.csrf, session.csrf);
        assert!(reread.purchase.is_none());
        // What the database holds that is not a session is no session.
        assert!(Session::from_stored("not json", T0, T0).is_none());
    }

    /// Anonymous sessions idle out in an hour, signed-in ones in twelve; either way a busy
    /// session ends a week after it began.
    #[test]
    fn sessions_idle_out_and_end_at_their_absolute_lifetime() {
        let mut session = Session::fresh(T0);
        assert_eq!(session.expiry(T0), T0 + ANONYMOUS_LIFETIME);
        assert_eq!(
            session.record(id_hash("id"), T0).unwrap().expires_at,
            T0 + ANONYMOUS_LIFETIME
        );
        session.admin = Some("Ops@Vendor.Example".into());
        assert_eq!(session.expiry(T0), T0 + LIFETIME);
        session.admin = None;
        session.user = Some(SessionUser {
            user_id: marketlink_core::UserId(uuid::Uuid::nil()),
            tenant_id: marketlink_core::TenantId(uuid::Uuid::nil()),
            email: "a@example.com".into(),
        });
        assert_eq!(session.expiry(T0), T0 + LIFETIME);

        let late = T0 + ABSOLUTE_LIFETIME - Duration::hours(1);
        assert_eq!(
            session.expiry(late),
            T0 + ABSOLUTE_LIFETIME,
            "never past a week"
        );
        let data = session.record(id_hash("id"), late).unwrap().data;
        assert!(Session::from_stored(&data, T0, late).is_some());
        assert!(Session::from_stored(&data, T0, T0 + ABSOLUTE_LIFETIME).is_none());
    }

    #[test]
    fn a_session_is_stored_by_who_holds_it() {
        let mut session = Session::fresh(T0);
        let anonymous = session.record(id_hash("id"), T0).unwrap();
        assert_eq!((anonymous.user_id, anonymous.operator), (None, None));
        session.admin = Some("Ops@Vendor.Example".into());
        let user = marketlink_core::UserId(uuid::Uuid::now_v7());
        session.user = Some(SessionUser {
            user_id: user,
            tenant_id: marketlink_core::TenantId(uuid::Uuid::nil()),
            email: "a@example.com".into(),
        });
        let record = session.record(id_hash("id"), T0).unwrap();
        assert_eq!(record.user_id, Some(user));
        assert_eq!(record.operator.as_deref(), Some("ops@vendor.example"));
    }

    /// A page view on an unchanged session writes nothing until the stored expiry is a
    /// minute behind.
    #[test]
    fn an_unchanged_session_is_written_back_only_when_its_expiry_is_stale() {
        let mut session = Session::fresh(T0);
        let stored = session.record(id_hash("id"), T0).unwrap();
        let soon = T0 + Duration::seconds(30);
        let again = session.record(id_hash("id"), soon).unwrap();
        assert!(Session::nothing_to_write(
            &again,
            &stored.data,
            stored.expires_at
        ));
        let later = T0 + REFRESH_AFTER + Duration::seconds(1);
        let again = session.record(id_hash("id"), later).unwrap();
        assert!(!Session::nothing_to_write(
            &again,
            &stored.data,
            stored.expires_at
        ));
        session.hold_purchase(purchase(), soon);
        let changed = session.record(id_hash("id"), soon).unwrap();
        assert!(!Session::nothing_to_write(
            &changed,
            &stored.data,
            stored.expires_at
        ));
    }

    #[test]
    fn a_forged_or_old_cookie_names_no_session() {
        // The buyer writes their own cookie (plain, not encrypted under our key).
        let id = new_id();
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            format!("{COOKIE}={id}").parse().unwrap(),
        );
        let jar = PrivateCookieJar::from_headers(&headers, Key::generate());
        assert!(cookie_id(&jar, false).is_none());
        // A cookie from before sessions moved to the database held the session itself: it
        // decrypts, but names no session (the browser starts a fresh one).
        let key = Key::generate();
        let json = serde_json::to_string(&Session::fresh(T0)).unwrap();
        let old = PrivateCookieJar::new(key).add(Cookie::new(COOKIE, json));
        assert!(cookie_id(&old, false).is_none());
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
