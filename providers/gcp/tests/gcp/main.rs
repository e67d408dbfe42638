//! The Google provider against a stand-in Google on loopback.
mod common;
mod google;
mod keys;
mod lifecycle;
mod notifications;
mod sandbox;
mod sandbox_lifecycle;
mod sandbox_push;
mod sandbox_signup;
mod sandbox_usage;
mod signup;
mod usage;
