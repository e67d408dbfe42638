//! Where the store benchmarks run: SQLite, PostgreSQL or both, each on a database made for the
//! run and dropped after it (`--backend`), or on one database the operator names
//! (`--database`). A fresh PostgreSQL database is created on `--postgres`, the test server by
//! default, as `marketlink bench day` does.

use anyhow::Context;
use sqlx::{Connection, Executor};

/// A store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a database URL names.
    pub fn of(url: &str) -> Self {
        if url.starts_with("postgres") {
            Self::Postgres
        } else {
            Self::Sqlite
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// The databases a benchmark runs on, in turn.
#[derive(Debug, Clone, clap::Args)]
pub struct Databases {
    /// Backends to run on, in turn, each on a fresh database dropped afterwards (a temporary
    /// SQLite file; a PostgreSQL database created on `--postgres`).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["sqlite", "postgres"])]
    pub backend: Vec<Backend>,
    /// One database to run on instead of `--backend`, kept afterwards. It must be empty: for
    /// PostgreSQL, `createdb` one first.
    #[arg(long)]
    pub database: Option<String>,
    /// PostgreSQL server the fresh databases are created on (a URL of any of its databases).
    #[arg(
        long,
        env = "MARKETLINK_TEST_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    pub postgres: String,
}

impl Databases {
    /// The backends to run on, in order, each once.
    pub fn backends(&self) -> Vec<Backend> {
        if let Some(url) = &self.database {
            return vec![Backend::of(url)];
        }
        let mut backends = Vec::new();
        for backend in &self.backend {
            if !backends.contains(backend) {
                backends.push(*backend);
            }
        }
        backends
    }

    /// The database to run `backend` on: the one named by `--database`, else a fresh one
    /// (`purpose` is part of its name).
    pub async fn open(&self, backend: Backend, purpose: &str) -> anyhow::Result<Database> {
        if let Some(url) = &self.database {
            return Ok(Database {
                backend,
                url: url.clone(),
                made: None,
            });
        }
        let made = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir()?;
                let url = format!(
                    "sqlite:{}",
                    dir.path().join(format!("{purpose}.db")).display()
                );
                (url, Made::File(dir))
            }
            Backend::Postgres => {
                let url = fresh_database(&self.postgres, purpose).await?;
                (url, Made::Postgres(self.postgres.clone()))
            }
        };
        Ok(Database {
            backend,
            url: made.0,
            made: Some(made.1),
        })
    }
}

/// A database a benchmark runs on; [`Database::remove`] drops it when the run made it.
#[derive(Debug)]
pub struct Database {
    pub backend: Backend,
    pub url: String,
    made: Option<Made>,
}

#[derive(Debug)]
enum Made {
    /// A SQLite file in a temporary directory, removed with it.
    File(tempfile::TempDir),
    /// A database created on the PostgreSQL server at this URL.
    Postgres(String),
}

impl Database {
    /// Drops the database if the run made it; one named by `--database` is kept.
    pub async fn remove(self) -> anyhow::Result<()> {
        match self.made {
            Some(Made::Postgres(admin)) => drop_database(&admin, &self.url).await,
            Some(Made::File(dir)) => Ok(dir.close()?),
            None => Ok(()),
        }
    }
}

/// Creates an empty database named after `purpose` on the server `admin` points at; its URL.
pub(super) async fn fresh_database(admin: &str, purpose: &str) -> anyhow::Result<String> {
    let name = format!("marketlink_{purpose}_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .with_context(|| format!("PostgreSQL at {}", marketlink_store::redact_url(admin)))?;
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
    Ok(format!("{base}/{name}"))
}

/// Drops a database made by [`fresh_database`], even while connections to it remain.
pub(super) async fn drop_database(admin: &str, url: &str) -> anyhow::Result<()> {
    let name = url.rsplit_once('/').map_or(url, |(_, name)| name);
    let mut conn = sqlx::PgConnection::connect(admin).await?;
    conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await?;
    Ok(())
}

/// Events in the ledger of the database at `url` whose idempotency key starts with
/// `prefix-`, read with plain sqlx: every event a benchmark had accepted must be one.
pub(super) async fn stored_events(url: &str, prefix: &str) -> anyhow::Result<u64> {
    anyhow::ensure!(
        prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-'),
        "a key prefix of letters, digits and dashes"
    );
    // `_` and `%` are LIKE's wildcards; the prefix has neither.
    let sql = format!("SELECT COUNT(*) FROM usage_events WHERE idempotency_key LIKE '{prefix}-%'");
    let count: i64 = match Backend::of(url) {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await?;
            let count = sqlx::query_scalar(&sql).fetch_one(&mut conn).await?;
            conn.close().await?;
            count
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            let count = sqlx::query_scalar(&sql).fetch_one(&mut conn).await?;
            conn.close().await?;
            count
        }
    };
    Ok(u64::try_from(count)?)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        databases: Databases,
    }

    fn parse(args: &[&str]) -> Databases {
        Args::parse_from(std::iter::once("bench").chain(args.iter().copied())).databases
    }

    #[test]
    fn both_backends_unless_told() {
        assert_eq!(parse(&[]).backends(), [Backend::Sqlite, Backend::Postgres]);
        assert_eq!(
            parse(&["--backend", "postgres"]).backends(),
            [Backend::Postgres]
        );
        assert_eq!(
            parse(&["--backend", "postgres,sqlite,postgres"]).backends(),
            [Backend::Postgres, Backend::Sqlite]
        );
        assert_eq!(
            parse(&["--database", "postgres://db/x"]).backends(),
            [Backend::Postgres]
        );
        assert_eq!(
            parse(&["--database", "sqlite:x.db"]).backends(),
            [Backend::Sqlite]
        );
    }

    #[tokio::test]
    async fn a_fresh_sqlite_file_goes_with_its_run() {
        let db = parse(&["--backend", "sqlite"])
            .open(Backend::Sqlite, "test")
            .await
            .unwrap();
        let path = db.url.trim_start_matches("sqlite:").to_owned();
        std::fs::write(&path, b"").unwrap();
        db.remove().await.unwrap();
        assert!(!std::path::Path::new(&path).exists());
    }
}
