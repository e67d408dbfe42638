//! Scrubbing of bearer secrets from text that came from outside: a marketplace's error body
//! may echo the landing token, an access token or a JWT it was sent, and that text reaches
//! our logs, the admin pages and error pages.

/// What a removed secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// A run of token characters this long or longer is treated as a secret when it mixes upper
/// case, lower case and digits (as random tokens do, and as ids, words, paths and dates do
/// not). UUIDs (36 characters) never mix both cases.
const MIN_SECRET_LEN: usize = 32;

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '_' | '-' | '.' | '%')
}

fn looks_secret(run: &str) -> bool {
    run.len() >= MIN_SECRET_LEN
        && run.bytes().any(|b| b.is_ascii_uppercase())
        && run.bytes().any(|b| b.is_ascii_lowercase())
        && run.bytes().any(|b| b.is_ascii_digit())
}

/// `text` with every token-like run (JWTs, marketplace tokens, access tokens, keys) replaced
/// by [`REDACTED`]; everything else kept as it was.
pub fn scrub_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(token_char) {
        out.push_str(&rest[..start]);
        let run_len = rest[start..]
            .find(|c: char| !token_char(c))
            .unwrap_or(rest.len() - start);
        let run = &rest[start..start + run_len];
        if looks_secret(run) {
            out.push_str(REDACTED);
        } else {
            out.push_str(run);
        }
        rest = &rest[start + run_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_tokens_and_keeps_the_words_around_them() {
        let jwt = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlX2J5dGVz";
        let aws = "sSoJdaDq3TQ82B0yS8dLPuK6+0x4T7JkYzMxQWRHb3h1UTU5ZmQ9PQ==";
        let text = format!("Token {jwt} is invalid; registration token {aws} expired.");
        assert_eq!(
            scrub_secrets(&text),
            "Token <redacted> is invalid; registration token <redacted> expired."
        );
    }

    #[test]
    fn keeps_ids_paths_dates_and_prose() {
        for text in [
            "subscription 37f9dea2-4345-438f-b0bd-03d40d28c7a0 not found",
            "subscription 37F9DEA2-4345-438F-B0BD-03D40D28C7A0 not found",
            "/api/saas/subscriptions/resolve?api-version=2018-08-31",
            "arn:aws:license-manager::123456789012:license:l-0123456789abcdef0123456789abcdef",
            "The offer prod-abc123 is not available in this region.",
            "",
        ] {
            assert_eq!(scrub_secrets(text), text);
        }
    }

    #[test]
    fn never_panics_on_any_text() {
        let text = "é€ eyJ\u{1F600}AAAAAAAAAAAAAAAAAAAaaaaaaaaaaaaaaaaaaa1111111 ✓";
        assert!(scrub_secrets(text).contains(REDACTED));
        assert!(scrub_secrets(text).starts_with("é€ "));
    }
}
