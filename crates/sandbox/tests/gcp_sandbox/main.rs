//! The Google sandbox over HTTP on a loopback port: sign-up keys and JWTs, the token endpoint,
//! the Procurement API's state machine and errors, Service Control, Pub/Sub pull and push.

mod faults;
mod harness;
mod procurement;
mod pubsub;
mod service_control;
mod signup;
