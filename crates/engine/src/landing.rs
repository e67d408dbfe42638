//! The landing page's use case: find the marketplace's set-up token in what the browser sent
//! and resolve it with the marketplace at once (tokens are short-lived). Passing failures are
//! retried by the provider's own policy only (AWS: `aws.max_attempts`); nothing here retries
//! again on top of it.

use std::sync::Arc;

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

    /// Resolves a set-up token to the purchase it stands for, once.
    pub async fn resolve_landing(
        &self,
        marketplace: &str,
        token: &LandingToken,
    ) -> Result<ResolvedPurchase, LandingError> {
        let provider = self.landing_provider(marketplace)?;
        match provider.resolve(token).await {
            Ok(purchase) => {
                tracing::info!(%marketplace, external_id = %purchase.subscription.external_id, "landing token resolved");
                Ok(purchase)
            }
            Err(ProviderError::InvalidToken(why)) => Err(LandingError::InvalidToken(why)),
            Err(ProviderError::ExpiredToken(why)) => Err(LandingError::ExpiredToken(why)),
            Err(error) if error.is_retryable() => {
                tracing::warn!(%marketplace, %error, "resolve failed after retries");
                Err(LandingError::Unavailable(error))
            }
            Err(error) => Err(LandingError::Failed(error)),
        }
    }
}
