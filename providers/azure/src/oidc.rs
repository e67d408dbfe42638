//! Buyer sign-in (OpenID Connect against Entra ID).
