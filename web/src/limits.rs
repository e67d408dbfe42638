//! Rate limits per client, by the kind of request: sign-in, sign-up, landing pages and
//! notification endpoints per client IP, the vendor API per API key. Each kind has its own
//! token bucket per client (the `governor` crate's GCRA); a client over its limit gets 429
//! with `Retry-After`. Behind a reverse proxy, the client is the right-most address of
//! `X-Forwarded-For` that is not a configured trusted proxy; anyone else's header is ignored,
//! so a client cannot pick its own key. IPv6 clients are keyed by their /64, which one
//! subscriber usually holds whole.

use std::{
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// One kind's limit: `per_minute` requests on average, up to `burst` at once; 0 turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

impl Rate {
    const fn new(per_minute: u32, burst: u32) -> Self {
        Self { per_minute, burst }
    }

    fn quota(self) -> Option<Quota> {
        let per_minute = NonZeroU32::new(self.per_minute)?;
        let burst = NonZeroU32::new(self.burst).unwrap_or(per_minute);
        Some(Quota::per_minute(per_minute).allow_burst(burst))
    }
}

/// `[rate_limits]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Reverse proxies whose `X-Forwarded-For` is believed: addresses or CIDR blocks.
    pub trusted_proxies: Vec<IpNet>,
    /// Buyer sign-in, admin login and the marketplace sign-in callback, per client IP.
    pub sign_in: Rate,
    /// Sign-up, linking, set-up requests, accepting invitations and asking for another
    /// verification mail, per client IP.
    pub sign_up: Rate,
    /// Landing pages and approved set-up links (each may cost a marketplace call) and email
    /// verification links, per IP.
    pub landing: Rate,
    /// Marketplace notification endpoints, per sending IP (AWS and Microsoft send bursts).
    pub notifications: Rate,
    /// The vendor API (`/api/…`), per API key (per IP for requests without one).
    pub api: Rate,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            sign_in: Rate::new(20, 10),
            sign_up: Rate::new(10, 5),
            landing: Rate::new(60, 20),
            notifications: Rate::new(3_000, 500),
            api: Rate::new(120_000, 2_000),
        }
    }
}

/// The kinds of request that are limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    SignIn,
    SignUp,
    Landing,
    Notification,
    Api,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::SignIn => "sign_in",
            Self::SignUp => "sign_up",
            Self::Landing => "landing",
            Self::Notification => "notifications",
            Self::Api => "api",
        }
    }
}

/// Which kind a request is; `None` is not limited here. `notification_paths` are the
/// providers' declared endpoints.
pub fn kind_of(method: &Method, path: &str, notification_paths: &[String]) -> Option<Kind> {
    let post = method == Method::POST;
    // The vendor API and its documentation.
    if path.starts_with("/api/") {
        return Some(Kind::Api);
    }
    if post && notification_paths.iter().any(|p| p == path) {
        return Some(Kind::Notification);
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (post, segments.as_slice()) {
        (true, ["signin"] | ["admin", "login"]) | (_, [_, "signin", "callback"]) => {
            Some(Kind::SignIn)
        }
        (true, ["signup"] | ["signup", _] | ["invite", _] | ["account", "verify-email"]) => {
            Some(Kind::SignUp)
        }
        (_, [_, "landing"] | ["onboarding", _] | ["verify-email", _]) => Some(Kind::Landing),
        _ => None,
    }
}

/// Who a bucket belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Client {
    Ip(IpAddr),
    ApiKey(String),
}

/// The limiters of one server.
pub struct Limiters {
    trusted: Vec<IpNet>,
    notification_paths: Vec<String>,
    kinds: Vec<(Kind, Buckets<Client>)>,
}

/// Forget idle clients every this many checks, so the buckets cannot grow without bound.
const PRUNE_EVERY: u64 = 4_096;

/// One token bucket per key, idle ones forgotten every [`PRUNE_EVERY`] checks.
struct Buckets<K: std::hash::Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    checks: AtomicU64,
}

impl<K: std::hash::Hash + Eq + Clone> Buckets<K> {
    fn new(quota: Quota) -> Self {
        Self {
            limiter: RateLimiter::keyed(quota),
            checks: AtomicU64::new(0),
        }
    }

    /// Takes a token of `key`'s bucket; `Err(wait)` when it is empty.
    fn take(&self, key: &K) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// A wait as the whole seconds of `Retry-After`, rounded up.
fn whole_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl Limiters {
    pub fn new(settings: &RateLimits, notification_paths: Vec<String>) -> Arc<Self> {
        let kinds = [
            (Kind::SignIn, settings.sign_in),
            (Kind::SignUp, settings.sign_up),
            (Kind::Landing, settings.landing),
            (Kind::Notification, settings.notifications),
            (Kind::Api, settings.api),
        ]
        .into_iter()
        .filter_map(|(kind, rate)| Some((kind, Buckets::new(rate.quota()?))))
        .collect();
        Arc::new(Self {
            trusted: settings.trusted_proxies.clone(),
            notification_paths,
            kinds,
        })
    }

    /// `Err(wait)` when `client` of `kind` must wait before its next request.
    fn check(&self, kind: Kind, client: &Client) -> Result<(), Duration> {
        match self.kinds.iter().find(|(k, _)| *k == kind) {
            Some((_, buckets)) => buckets.take(client),
            None => Ok(()),
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer, or, when the peer is a trusted proxy, the right-most
    /// `X-Forwarded-For` entry that is not one.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?;
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|ip| ip.trim().parse().ok())
            .collect();
        let client = forwarded
            .iter()
            .rev()
            .find(|ip| !self.is_trusted(**ip))
            .or(forwarded.first())
            .copied();
        Some(client.unwrap_or(peer))
    }
}

/// The bucket key of an address: IPv4 as is, IPv6 by its /64.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
    }
}

/// The API key's public prefix (`mlk_<prefix>_<secret>`), never its secret.
fn api_key_prefix(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let key = value.strip_prefix("Bearer ")?.trim();
    let mut parts = key.splitn(3, '_');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("mlk"), Some(prefix), Some(_)) if !prefix.is_empty() && prefix.len() <= 32 => {
            Some(prefix.to_owned())
        }
        _ => None,
    }
}

/// The middleware: classifies the request, checks its client's bucket, answers 429 when
/// empty.
pub async fn limit(
    State(limiters): State<Arc<Limiters>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(kind) = kind_of(
        request.method(),
        request.uri().path(),
        &limiters.notification_paths,
    ) else {
        return next.run(request).await;
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let ip = limiters.client_ip(peer, request.headers());
    let client = match (kind, api_key_prefix(request.headers()), ip) {
        (Kind::Api, Some(prefix), _) => Client::ApiKey(prefix),
        (_, _, Some(ip)) => Client::Ip(bucket(ip)),
        // No peer address (a router driven in-process): nothing to key on.
        (_, _, None) => return next.run(request).await,
    };
    match limiters.check(kind, &client) {
        Ok(()) => next.run(request).await,
        Err(wait) => too_many(kind, wait, &client),
    }
}

fn too_many(kind: Kind, wait: Duration, client: &Client) -> Response {
    let seconds = whole_seconds(wait);
    metrics::counter!("marketlink_rate_limited_total", "kind" => kind.as_str()).increment(1);
    tracing::warn!(
        kind = kind.as_str(),
        ?client,
        retry_after = seconds,
        "rate limited"
    );
    let mut response = match kind {
        Kind::Api => (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(serde_json::json!({ "error": {
                "code": "rate_limited",
                "message": format!("Too many requests with this API key; retry after {seconds} s."),
            }})),
        )
            .into_response(),
        Kind::Notification => (
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests; retry later",
        )
            .into_response(),
        _ => crate::pages::PageError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            "We received too many requests from your network in a short time.",
        )
        .step(format!("Wait {seconds} seconds, then try again."))
        .retry_after(seconds)
        .into_page(),
    };
    if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Sign-in attempts per account (by email, whoever sends them): 10 at once, then one a
/// minute. Guessing one account's password from many addresses is slowed to 60 tries an hour,
/// and its owner waits at most a minute once the guessing stops, so an attacker cannot lock
/// them out for good.
pub struct AccountAttempts(Buckets<String>);

impl Default for AccountAttempts {
    fn default() -> Self {
        let quota = Quota::per_minute(NonZeroU32::MIN)
            .allow_burst(NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN));
        Self(Buckets::new(quota))
    }
}

impl AccountAttempts {
    /// Counts an attempt on `email`; `Err(wait)` when the account takes no more for now.
    pub fn attempt(&self, email: &str) -> Result<(), Duration> {
        self.0.take(&email.trim().to_lowercase())
    }

    /// The page for an account that takes no more attempts for now (the same for accounts
    /// that do not exist, so it reveals none).
    pub fn refusal(wait: Duration) -> crate::pages::PageError {
        let seconds = whole_seconds(wait);
        metrics::counter!("marketlink_rate_limited_total", "kind" => "account").increment(1);
        crate::pages::PageError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in attempts",
            "This account has had too many sign-in attempts in a short time.",
        )
        .step(format!("Wait {seconds} seconds, then try again."))
        .retry_after(seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> Vec<String> {
        vec!["/aws/sns".into(), "/azure/webhook".into()]
    }

    #[test]
    fn requests_are_sorted_into_kinds() {
        let kind = |m: Method, p: &str| kind_of(&m, p, &paths());
        assert_eq!(kind(Method::POST, "/signin"), Some(Kind::SignIn));
        assert_eq!(
            kind(Method::GET, "/signin"),
            None,
            "the form itself is free"
        );
        assert_eq!(kind(Method::POST, "/admin/login"), Some(Kind::SignIn));
        assert_eq!(
            kind(Method::GET, "/azure/signin/callback"),
            Some(Kind::SignIn)
        );
        assert_eq!(kind(Method::POST, "/signup"), Some(Kind::SignUp));
        assert_eq!(kind(Method::POST, "/signup/contact"), Some(Kind::SignUp));
        assert_eq!(kind(Method::POST, "/invite/abc"), Some(Kind::SignUp));
        assert_eq!(kind(Method::GET, "/azure/landing"), Some(Kind::Landing));
        assert_eq!(kind(Method::POST, "/aws/landing"), Some(Kind::Landing));
        assert_eq!(kind(Method::GET, "/onboarding/tok"), Some(Kind::Landing));
        // Asking for another verification mail sends one: limited like a sign-up.
        assert_eq!(
            kind(Method::POST, "/account/verify-email"),
            Some(Kind::SignUp)
        );
        assert_eq!(kind(Method::GET, "/verify-email/tok"), Some(Kind::Landing));
        assert_eq!(kind(Method::POST, "/aws/sns"), Some(Kind::Notification));
        assert_eq!(
            kind(Method::POST, "/azure/webhook"),
            Some(Kind::Notification)
        );
        assert_eq!(kind(Method::GET, "/api/v1/check"), Some(Kind::Api));
        assert_eq!(kind(Method::GET, "/account"), None);
        assert_eq!(kind(Method::GET, "/healthz"), None);
    }

    #[test]
    fn only_trusted_proxies_name_the_client() {
        let settings = RateLimits {
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
            ..RateLimits::default()
        };
        let limiters = Limiters::new(&settings, paths());
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.7, 10.1.1.1"),
        );
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let stranger: IpAddr = "198.51.100.9".parse().unwrap();
        // Through our proxies: the right-most address they did not add themselves; the
        // left-most (6.6.6.6) is whatever the client wrote.
        assert_eq!(
            limiters.client_ip(Some(proxy), &headers),
            Some("203.0.113.7".parse().unwrap())
        );
        // Anyone else's header is ignored.
        assert_eq!(limiters.client_ip(Some(stranger), &headers), Some(stranger));
        assert_eq!(limiters.client_ip(None, &headers), None);
    }

    #[test]
    fn ipv6_clients_share_their_64_and_keys_are_named_by_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(bucket(a), bucket(b));
        assert_ne!(bucket(a), bucket("2001:db8:1:3::1".parse().unwrap()));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer mlk_ab12cd_secretsecret"),
        );
        assert_eq!(api_key_prefix(&headers).as_deref(), Some("ab12cd"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer junk"),
        );
        assert_eq!(api_key_prefix(&headers), None);
    }

    #[test]
    fn an_account_takes_ten_attempts_then_one_a_minute_whatever_the_case() {
        let attempts = AccountAttempts::default();
        for _ in 0..10 {
            assert!(attempts.attempt("Victim@Acme.example").is_ok());
        }
        let wait = attempts.attempt("victim@acme.example ").unwrap_err();
        assert!(
            wait <= Duration::from_secs(60) && wait > Duration::from_secs(50),
            "{wait:?}"
        );
        assert!(attempts.attempt("other@acme.example").is_ok());
    }

    #[test]
    fn a_bucket_empties_and_says_how_long_to_wait() {
        let settings = RateLimits {
            sign_in: Rate::new(60, 3),
            sign_up: Rate::new(0, 0),
            ..RateLimits::default()
        };
        let limiters = Limiters::new(&settings, paths());
        let me = Client::Ip("192.0.2.1".parse().unwrap());
        let other = Client::Ip("192.0.2.2".parse().unwrap());
        for _ in 0..3 {
            assert!(limiters.check(Kind::SignIn, &me).is_ok());
        }
        let wait = limiters.check(Kind::SignIn, &me).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(
            limiters.check(Kind::SignIn, &other).is_ok(),
            "one client's bucket"
        );
        for _ in 0..100 {
            assert!(
                limiters.check(Kind::SignUp, &me).is_ok(),
                "0 turns a kind off"
            );
        }
    }
}
