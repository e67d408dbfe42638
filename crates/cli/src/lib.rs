//! marketlink-cli: wiring. Builds the configuration, store, providers, engine, web server and
//! workers, and runs the commands of the `marketlink` binary. A library too, so end-to-end
//! tests run exactly what the binary runs.

pub mod bench;
pub mod config;
pub mod doctor;
pub mod run;
pub mod sandbox;
