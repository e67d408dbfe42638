//! Security headers on every response, so a browser treats our pages as what they are: no
//! script at all (the pages need none), never framed (no clickjacking of the sign-up or admin
//! forms), no content sniffing, no referrer (landing URLs carry marketplace tokens in their
//! query), HTTPS remembered when we are served over it, and nothing stored by caches unless a
//! handler says otherwise (pages show API keys, invitation links and personal data).

use axum::{
    Router,
    http::{HeaderName, HeaderValue, header},
};
use tower_http::set_header::SetResponseHeaderLayer;

/// `style-src 'unsafe-inline'`: the vendor's accent colour and a few layout attributes are
/// inline styles; styles cannot run code. Forms post only to us.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// One year, as browsers' preload lists ask.
const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// Adds the headers to every response of `router`; HSTS only when served over https.
pub fn secure<S: Clone + Send + Sync + 'static>(router: Router<S>, https: bool) -> Router<S> {
    let fixed: [(HeaderName, &'static str); 5] = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    let mut router = router;
    for (name, value) in fixed {
        // A handler's own value wins (the stylesheet is cacheable).
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    if https {
        router = router.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(STRICT_TRANSPORT_SECURITY),
        ));
    }
    router
}
