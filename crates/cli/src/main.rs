//! `marketlink`: the one binary. Wires configuration → store → providers → web → workers.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use marketlink_cli::{
    config::{self, Config},
    run,
};

/// mimalloc instead of glibc's malloc (ADR 0027): allocation was a seventh of a busy server's
/// CPU, and glibc's arenas grew the resident set under many threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Write a consistent copy of the SQLite database while `serve` runs (PostgreSQL: use
    /// pg_dump; docs/operations.md, "Backup and restore").
    Backup {
        /// The file to write; an existing file is never overwritten.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Run a local demo: the server on an embedded SQLite database, with the built-in
    /// marketplace sandbox, no configuration needed.
    Demo {
        /// Directory for the demo database (created when missing).
        #[arg(long, default_value = "marketlink-data")]
        data_dir: PathBuf,
        /// Address of the built-in AWS Marketplace sandbox.
        #[arg(long, default_value = "127.0.0.1:9090")]
        aws_sandbox: std::net::SocketAddr,
        /// Address of the built-in Microsoft marketplace sandbox (served over TLS).
        #[arg(long, default_value = "127.0.0.1:8443")]
        azure_sandbox: std::net::SocketAddr,
        /// Address of the built-in Google Cloud Marketplace sandbox.
        #[arg(long, default_value = "127.0.0.1:8094")]
        gcp_sandbox: std::net::SocketAddr,
    },
    /// Run only the built-in marketplace sandbox, for trying a marketlink deployed elsewhere.
    Sandbox {
        /// Address of the AWS Marketplace sandbox.
        #[arg(long, default_value = "127.0.0.1:9090")]
        aws_bind: std::net::SocketAddr,
        /// AWS scenario (products, offers, dimensions, faults) as TOML; built-in default otherwise.
        #[arg(long)]
        aws_scenario: Option<PathBuf>,
        /// Address of the Microsoft marketplace sandbox (served over TLS).
        #[arg(long, default_value = "127.0.0.1:8443")]
        azure_bind: std::net::SocketAddr,
        /// Microsoft scenario (offers, plans, test users, faults) as TOML; built-in default otherwise.
        #[arg(long)]
        azure_scenario: Option<PathBuf>,
        /// Address of the Google Cloud Marketplace sandbox.
        #[arg(long, default_value = "127.0.0.1:8094")]
        gcp_bind: std::net::SocketAddr,
        /// Google scenario (provider, plans, metrics, Pub/Sub) as TOML; built-in default otherwise.
        #[arg(long)]
        gcp_scenario: Option<PathBuf>,
        /// Write the Google sandbox's service account key file (JSON) here.
        #[arg(long)]
        gcp_key_file: Option<PathBuf>,
        /// The marketlink public URL the sandbox sends buyers and notifications to.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        vendor_url: String,
    },
    /// Check the configuration, database, public URL and marketplace credentials, and say
    /// what is wrong. Exit code 1 when any check fails.
    Doctor {
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compare subscriptions with the marketplaces' own view; repair what is safe (missed
    /// notifications, stuck activations) and report the rest.
    Reconcile {
        /// Only report; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the annotated example configuration.
    Config,
    /// Print the vendor API's OpenAPI 3.1 description (what `docs/openapi.json` holds).
    Openapi,
    /// Measure performance; figures are printed for comparison run to run.
    Bench {
        #[command(subcommand)]
        which: marketlink_cli::bench::BenchCommand,
    },
    /// The admin portal's operators.
    Admin {
        #[command(subcommand)]
        action: run::AdminCommand,
    },
    /// Provisioning webhooks to the vendor's product: list deliveries, replay one.
    Webhooks {
        #[command(subcommand)]
        action: run::WebhookCommand,
    },
    /// Manage the API keys the vendor's product uses (stored hashed; shown once).
    ApiKey {
        #[command(subcommand)]
        action: run::ApiKeyCommand,
    },
    /// Usage metering: flush by hand, show the backlog.
    Meter {
        #[command(subcommand)]
        action: MeterCommand,
    },
}

#[derive(Debug, Subcommand)]
enum MeterCommand {
    /// Send every closed hour to the marketplaces now (what the server does every interval).
    Flush,
    /// Show hourly totals per state, the backlog and the dead letters.
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config => {
            print!("{}", config::EXAMPLE);
            return ExitCode::SUCCESS;
        }
        Command::Openapi => {
            print!("{}", marketlink_web::openapi::json());
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let base = match &cli.command {
        Command::Demo { aws_sandbox, .. } => Some(config::demo_base(*aws_sandbox)),
        _ => None,
    };
    let config = match Config::load_over(base.as_deref(), cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("marketlink: {error}");
            return ExitCode::from(2);
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
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command, config)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("marketlink: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command that needs the configuration; `doctor` exits 1 when a check failed.
async fn execute(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    let done = match command {
        Command::Doctor { json } => {
            let healthy = marketlink_cli::doctor::run(config, json).await?;
            return Ok(if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        Command::Serve => run::serve(config).await,
        Command::Migrate { dry_run } => run::migrate(config, dry_run).await,
        Command::Backup { output } => run::backup(config, &output).await,
        Command::Demo {
            data_dir,
            aws_sandbox,
            azure_sandbox,
            gcp_sandbox,
        } => {
            let binds = run::DemoSandboxes {
                aws: aws_sandbox,
                azure: azure_sandbox,
                gcp: gcp_sandbox,
            };
            run::demo(config, data_dir, binds).await
        }
        Command::Sandbox {
            aws_bind,
            aws_scenario,
            azure_bind,
            azure_scenario,
            gcp_bind,
            gcp_scenario,
            gcp_key_file,
            vendor_url,
        } => {
            run::sandbox(run::SandboxArgs {
                aws_bind,
                aws_scenario,
                azure_bind,
                azure_scenario,
                gcp_bind,
                gcp_scenario,
                gcp_key_file,
                vendor_url,
            })
            .await
        }
        Command::Meter { action } => match action {
            MeterCommand::Flush => run::meter_flush(config).await,
            MeterCommand::Status => run::meter_status(config).await,
        },
        // Handled in `main` before the configuration is loaded.
        Command::Config | Command::Openapi => Ok(()),
        Command::ApiKey { action } => run::api_key(config, action).await,
        Command::Webhooks { action } => run::webhooks(config, action).await,
        Command::Admin { action } => run::admin(action).await,
        Command::Bench { which } => marketlink_cli::bench::run(which).await,
        Command::Reconcile { dry_run } => run::reconcile(config, dry_run).await,
    };
    done.map(|()| ExitCode::SUCCESS)
}
