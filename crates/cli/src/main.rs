//! `marketlink`: the one binary. Wires configuration → store → providers → web → workers.

mod config;
mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// Sell one SaaS product on AWS Marketplace and Microsoft's marketplace through one adapter.
#[derive(Debug, Parser)]
#[command(name = "marketlink", version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML). Environment variables MARKETLINK_* override it.
    #[arg(long, short, global = true, env = "MARKETLINK_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (landing pages, notification endpoints, APIs).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate {
        /// Only list the migrations that would be applied.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run a local demo: the server on an embedded SQLite database, with the built-in
    /// marketplace sandbox, no configuration needed.
    Demo {
        /// Directory for the demo database (created when missing).
        #[arg(long, default_value = "marketlink-data")]
        data_dir: PathBuf,
    },
    /// Print the annotated example configuration.
    Config,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::Config = cli.command {
        print!("{}", config::EXAMPLE);
        return std::process::ExitCode::SUCCESS;
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("marketlink: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    run::init_tracing(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("marketlink: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => run::serve(config).await,
            Command::Migrate { dry_run } => run::migrate(config, dry_run).await,
            Command::Demo { data_dir } => run::demo(config, data_dir).await,
            Command::Config => Ok(()),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("marketlink: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
