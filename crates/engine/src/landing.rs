//! The landing page's use case: find the marketplace's set-up token in what the browser sent
//! and resolve it with the marketplace at once (tokens are short-lived). Passing failures are
//! retried by the provider's own policy only (AWS: `aws.max_attempts`); nothing here retries
//! again on top of it.
//!
//! Landing requests are unauthenticated, so each must not cost a marketplace call: a token's
//! answer (the purchase, or "invalid" / "expired") is kept for [`RESOLUTION_TTL`], keyed by
//! the token's SHA-256, and concurrent landings of one token share one call.

use std::{sync::Arc, time::Duration};

use sha2::{Digest, Sha256};

use marketlink_core::{
    BuyerSignIn, LandingToken, Marketplace, MarketplaceProvider, MarketplaceRules, ProviderError,
    ResolvedPurchase,
};

use crate::Engine;

/// Why a landing did not produce a purchase, in the terms the buyer's page needs.
#[derive(Debug, thiserror::Error)]
pub enum LandingError {
    #[error("this service does not sell through `{0}`")]
    UnknownMarketplace(String),
    #[error("the request carries no set-up token")]
    NoToken,
    #[error("the marketplace did not recognise the token: {0}")]
    InvalidToken(String),
    #[error("the token has expired: {0}")]
    ExpiredToken(String),
    /// A passing failure that outlasted the provider's retries.
    #[error("the marketplace is not answering: {0}")]
    Unavailable(ProviderError),
    #[error(transparent)]
    Failed(ProviderError),
}

/// How long a token's answer is reused: reloads and double submits within it cost nothing.
pub const RESOLUTION_TTL: Duration = Duration::from_secs(60);
/// Token answers kept at most.
const RESOLUTION_CAPACITY: u64 = 10_000;

/// A marketplace's lasting answer about one token.
#[derive(Clone)]
pub(crate) enum Resolution {
    Resolved(Box<ResolvedPurchase>),
    Invalid(String),
    Expired(String),
}

/// Recent token answers, by SHA-256 of marketplace and token.
pub(crate) type ResolutionCache = moka::future::Cache<[u8; 32], Resolution>;

pub(crate) fn resolution_cache() -> ResolutionCache {
    moka::future::Cache::builder()
        .max_capacity(RESOLUTION_CAPACITY)
        .time_to_live(RESOLUTION_TTL)
        .build()
}

impl Engine {
    /// How buyers know each marketplace we sell through, e.g. "AWS Marketplace".
    pub fn marketplace_names(&self) -> Vec<String> {
        self.providers
            .iter()
            .map(|p| p.rules().display_name.into_owned())
            .collect()
    }

    /// The rules of the marketplace named in a URL; generic ones (naming it as written) for a
    /// marketplace we do not sell through.
    pub fn marketplace_rules(&self, marketplace: &str) -> MarketplaceRules {
        match Marketplace::parse(marketplace) {
            Ok(known) => self.providers.rules(&known),
            Err(_) => MarketplaceRules::generic(marketplace.to_owned()),
        }
    }

    fn landing_provider(
        &self,
        marketplace: &str,
    ) -> Result<&Arc<dyn MarketplaceProvider>, LandingError> {
        self.providers
            .by_name(marketplace)
            .ok_or_else(|| LandingError::UnknownMarketplace(marketplace.to_owned()))
    }

    /// The set-up token in the landing request's query or form `fields`; `posted` says they
    /// came in a POST body. A marketplace that POSTs its token (`landing_post_only`) finds
    /// none in a URL.
    pub fn landing_token(
        &self,
        marketplace: &str,
        fields: &[(String, String)],
        posted: bool,
    ) -> Result<LandingToken, LandingError> {
        let provider = self.landing_provider(marketplace)?;
        if provider.rules().landing_post_only && !posted {
            return Err(LandingError::NoToken);
        }
        provider.landing_token(fields).ok_or(LandingError::NoToken)
    }

    /// The identity provider buyers of `marketplace` sign in with before their token is
    /// resolved, if the marketplace asks for one (Microsoft, seed 000).
    pub fn buyer_sign_in(&self, marketplace: &str) -> Option<Arc<dyn BuyerSignIn>> {
        self.providers
            .by_name(marketplace)
            .and_then(|p| p.buyer_sign_in())
    }

    /// Resolves a set-up token to the purchase it stands for: once, or from the answer a
    /// landing of the same token had in the last [`RESOLUTION_TTL`].
    pub async fn resolve_landing(
        &self,
        marketplace: &str,
        token: &LandingToken,
    ) -> Result<ResolvedPurchase, LandingError> {
        let provider = self.landing_provider(marketplace)?.clone();
        let key: [u8; 32] = Sha256::new()
            .chain_update(marketplace.as_bytes())
            .chain_update([0])
            .chain_update(token.token.as_bytes())
            .finalize()
            .into();
        let name = marketplace.to_owned();
        let answer = self
            .resolutions
            .try_get_with(key, async move { ask(&*provider, &name, token).await })
            .await;
        match answer {
            Ok(Resolution::Resolved(purchase)) => Ok(*purchase),
            Ok(Resolution::Invalid(why)) => Err(LandingError::InvalidToken(why)),
            Ok(Resolution::Expired(why)) => Err(LandingError::ExpiredToken(why)),
            // Not kept: the next landing asks again. Waiters that shared the call share its
            // error; each gets it as a value.
            Err(shared) => Err(Arc::try_unwrap(shared).unwrap_or_else(|shared| {
                LandingError::Unavailable(ProviderError::retryable(shared.to_string()))
            })),
        }
    }
}

/// One Resolve call; a lasting answer is `Ok` (kept), a passing or unknown failure `Err`.
async fn ask(
    provider: &dyn MarketplaceProvider,
    marketplace: &str,
    token: &LandingToken,
) -> Result<Resolution, LandingError> {
    match provider.resolve(token).await {
        Ok(purchase) => {
            tracing::info!(%marketplace, external_id = %purchase.subscription.external_id, "landing token resolved");
            Ok(Resolution::Resolved(Box::new(purchase)))
        }
        Err(ProviderError::InvalidToken(why)) => Ok(Resolution::Invalid(why)),
        Err(ProviderError::ExpiredToken(why)) => Ok(Resolution::Expired(why)),
        Err(error) if error.is_retryable() => {
            tracing::warn!(%marketplace, %error, "resolve failed after retries");
            Err(LandingError::Unavailable(error))
        }
        Err(error) => Err(LandingError::Failed(error)),
    }
}
