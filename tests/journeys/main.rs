//! End-to-end journeys through the real server and the marketplace sandboxes.

mod admin;
mod api;
mod approval;
mod authz_matrix;
mod aws;
mod aws_answers;
mod aws_day_one;
mod azure;
mod azure_changes;
mod azure_converge;
mod azure_sign_in;
mod azure_two_apps;
mod azure_webhooks;
mod doctor;
mod email_verification;
mod headers;
mod metering;
mod ops;
mod people;
mod rate_limits;
mod reconcile;
mod replicas;
mod returning;
mod sessions;
mod usage_caps;
mod webhooks;
