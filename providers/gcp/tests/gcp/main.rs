//! The Google provider against a stand-in Google on loopback.
mod common;
mod google;
mod keys;
mod signup;
mod lifecycle;
mod notifications;
