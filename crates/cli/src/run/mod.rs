//! The commands' bodies: start-up order, wiring and shutdown. One module per command (or
//! family of subcommands); `database`, `wiring` and `signal` are what they share.

mod admin;
mod api_key;
mod backup;
mod database;
mod demo;
mod logging;
mod meter;
mod reconcile;
mod serve;
mod signal;
mod webhooks;
mod wiring;

pub use self::{
    admin::{AdminCommand, admin},
    api_key::{ApiKeyCommand, api_key},
    backup::backup,
    database::migrate,
    demo::{DemoSandboxes, SandboxArgs, demo, sandbox},
    logging::init_tracing,
    meter::{meter_flush, meter_status},
    reconcile::{reconcile, reconcile_once},
    serve::{serve, serve_on, serve_until},
    webhooks::{WebhookCommand, webhooks},
    wiring::providers,
};
