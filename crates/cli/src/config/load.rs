//! Loading: built-in defaults ← base TOML ← file ← `MARKETLINK_*` environment, merged with
//! figment, then validated. Figment's errors are rewritten to name the key and its source.

use std::path::Path;

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};

use super::{Config, ConfigError};

const ENV_PREFIX: &str = "MARKETLINK_";

/// `MARKETLINK_*` variables that are not configuration keys.
const NON_CONFIG_ENV: &[&str] = &["MARKETLINK_CONFIG"];

impl Config {
    /// Loads defaults ← `base` (TOML, if given) ← `file` (if given) ← `MARKETLINK_*`
    /// environment, then validates.
    pub fn load_over(base: Option<&str>, file: Option<&Path>) -> Result<Self, ConfigError> {
        check_env_names(std::env::vars().map(|(name, _)| name))?;
        let env = Env::prefixed(ENV_PREFIX)
            .filter(|key| key.as_str().contains("__"))
            .split("__");
        Self::load_layers(base, file, env)
    }

    fn load_layers(base: Option<&str>, file: Option<&Path>, env: Env) -> Result<Self, ConfigError> {
        // Every struct is `#[serde(default)]`, so an empty figment yields the defaults.
        let mut figment = Figment::new();
        if let Some(base) = base {
            figment = figment.merge(Toml::string(base));
        }
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.display().to_string()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let config: Config = figment
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(e)))?;
        config.validate()?;
        Ok(config)
    }
}

/// Every configuration key is nested (`section.key`), so a `MARKETLINK_` variable without a
/// double underscore is almost always a typo such as `MARKETLINK_DATABASE_URL`: say so rather
/// than ignore it. `MARKETLINK_TEST_*` belongs to the test suite.
fn check_env_names(names: impl Iterator<Item = String>) -> Result<(), ConfigError> {
    for name in names {
        let Some(key) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if key.contains("__") || key.starts_with("TEST_") || NON_CONFIG_ENV.contains(&name.as_str())
        {
            continue;
        }
        let suggestion = key.to_ascii_uppercase().replacen('_', "__", 1);
        return Err(ConfigError::Invalid(format!(
            "environment variable {name} is not a configuration key; nested keys use a double \
             underscore, e.g. {ENV_PREFIX}{suggestion}"
        )));
    }
    Ok(())
}

/// Figment errors name the key and the source; keep every error, one per line.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                String::new()
            } else {
                format!("`{}`: ", e.path.join("."))
            };
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            format!("{key}{}{source}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::config::{EXAMPLE, LogFormat, demo_base};

    fn no_env() -> Env {
        Env::prefixed("MARKETLINK_TEST_UNUSED_PREFIX_")
    }

    fn load_from(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_layers(None, file, no_env())
    }

    fn file(contents: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        f
    }

    #[test]
    fn defaults_need_no_configuration() {
        let config = load_from(None).unwrap();
        assert_eq!(config, Config::default());
        assert!(config.database.url.starts_with("sqlite:"));
    }

    #[test]
    fn the_example_file_is_valid_and_matches_the_defaults() {
        let f = file(EXAMPLE);
        let config = load_from(Some(f.path())).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn file_values_apply() {
        let f =
            file("[server]\nbind = \"0.0.0.0:9000\"\n[database]\nurl = \"postgres://u@h/db\"\n");
        let config = load_from(Some(f.path())).unwrap();
        assert_eq!(config.server.bind.port(), 9000);
        assert_eq!(config.database.url, "postgres://u@h/db");
    }

    #[test]
    #[expect(clippy::result_large_err, reason = "figment's test API")]
    fn environment_wins_over_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("m.toml", "[database]\nurl = \"sqlite:file.db\"\n")?;
            jail.set_env("MARKETLINK_DATABASE__URL", "sqlite:env.db");
            jail.set_env("MARKETLINK_SERVER__BODY_LIMIT_BYTES", "4096");
            let config = Config::load_over(None, Some(Path::new("m.toml"))).unwrap();
            assert_eq!(config.database.url, "sqlite:env.db");
            assert_eq!(config.server.body_limit_bytes, 4096);
            Ok(())
        });
    }

    #[test]
    fn unknown_key_is_named() {
        let f = file("[server]\nbnd = \"0.0.0.0:9000\"\n");
        let err = load_from(Some(f.path())).unwrap_err().to_string();
        assert!(err.contains("bnd"), "{err}");
        assert!(err.contains("server"), "{err}");
    }

    #[test]
    fn bad_value_names_the_key() {
        let f = file("[server]\nbind = \"not an address\"\n");
        let err = load_from(Some(f.path())).unwrap_err().to_string();
        assert!(err.contains("server.bind"), "{err}");

        let f = file("[database]\nurl = \"mysql://x\"\n");
        let err = load_from(Some(f.path())).unwrap_err().to_string();
        assert!(err.contains("database.url"), "{err}");

        let f = file("[server]\npublic_url = \"ftp://x\"\n");
        let err = load_from(Some(f.path())).unwrap_err().to_string();
        assert!(err.contains("server.public_url"), "{err}");

        let f = file("[log]\nformat = \"xml\"\n");
        let err = load_from(Some(f.path())).unwrap_err().to_string();
        assert!(err.contains("log.format"), "{err}");
    }

    #[test]
    fn single_underscore_env_names_are_reported() {
        let ok = [
            "PATH",
            "MARKETLINK_CONFIG",
            "MARKETLINK_TEST_SKIP_POSTGRES",
            "MARKETLINK_DATABASE__URL",
        ];
        check_env_names(ok.iter().map(|s| s.to_string())).unwrap();
        let err = check_env_names(std::iter::once("MARKETLINK_DATABASE_URL".to_string()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("MARKETLINK_DATABASE__URL"), "{err}");
    }

    #[test]
    fn the_demo_configuration_is_valid() {
        let base = demo_base("127.0.0.1:9090".parse().unwrap());
        let config = Config::load_layers(Some(&base), None, no_env()).unwrap();
        assert_eq!(config.catalog.products.len(), 2);
        let aws = config.aws.unwrap();
        assert_eq!(aws.endpoint_url.as_deref(), Some("http://127.0.0.1:9090"));
        assert_eq!(aws.products.len(), 2);
    }

    #[test]
    #[expect(clippy::result_large_err, reason = "figment's test API")]
    fn gcp_comes_from_the_environment_and_is_checked() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("MARKETLINK_GCP__PROVIDER_ID", "DEMO-p");
            jail.set_env("MARKETLINK_GCP__SERVICE_NAME", "svc.example.com");
            let gcp = Config::load_over(None, None).unwrap().gcp.unwrap();
            assert_eq!(
                (gcp.provider_id.as_str(), gcp.service_name.as_str()),
                ("DEMO-p", "svc.example.com")
            );
            jail.set_env("MARKETLINK_GCP__SUBSCRIPTION", "my-sub");
            let err = Config::load_over(None, None).unwrap_err().to_string();
            assert!(
                err.contains("`gcp`") && err.contains("projects/<project>/subscriptions/<name>"),
                "{err}"
            );
            Ok(())
        });
        let f = file("[gcp]\nservice_name = \"svc.example.com\"\n");
        let err = load_from(Some(f.path())).unwrap_err().to_string();
        assert!(err.contains("provider_id is required"), "{err}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = load_from(Some(Path::new("/nonexistent/m.toml"))).unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile(_)));
    }

    #[test]
    fn log_format_takes_text_and_json() {
        let f = file("[log]\nformat = \"text\"\n");
        let config = load_from(Some(f.path())).unwrap();
        assert_eq!(config.log.format, LogFormat::Pretty);
        let f = file("[log]\nformat = \"json\"\n");
        let config = load_from(Some(f.path())).unwrap();
        assert_eq!(config.log.format, LogFormat::Json);
    }

    #[test]
    fn metrics_token_is_checked_and_not_printed() {
        let f = file("[server]\nmetrics_token = \"short\"\n");
        let err = load_from(Some(f.path())).unwrap_err().to_string();
        assert!(err.contains("server.metrics_token"), "{err}");
        let f = file("[server]\nmetrics = false\nmetrics_token = \"scrape-token-0123456789\"\n");
        let config = load_from(Some(f.path())).unwrap();
        assert!(!config.server.metrics);
        assert!(!format!("{config:?}").contains("scrape-token"));
    }

    #[test]
    fn email_is_checked_and_its_password_not_printed() {
        let f = file(
            "[email]\nsmtp_url = \"smtps://mailer:hunter2@smtp.example\"\nfrom = \"Acme <no-reply@acme.example>\"\n",
        );
        let config = load_from(Some(f.path())).unwrap();
        assert!(config.email.is_some());
        assert!(!format!("{config:?}").contains("hunter2"));
        let f = file(
            "[email]\nsmtp_url = \"smtp://mailer:hunter2@smtp.example:587\"\nfrom = \"a@b.example\"\n",
        );
        let err = load_from(Some(f.path())).unwrap_err().to_string();
        assert!(
            err.contains("email.smtp_url") && err.contains("in clear"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        let f = file("[email]\nsmtp_url = \"smtp://127.0.0.1:25\"\nfrom = \"nobody\"\n");
        let err = load_from(Some(f.path())).unwrap_err().to_string();
        assert!(err.contains("email.from"), "{err}");
    }

    #[test]
    fn database_password_is_not_printed() {
        let mut config = Config::default();
        config.database.url = "postgres://app:hunter2@db/marketlink".into();
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn retention_shorter_than_the_late_usage_window_is_refused() {
        let f = file("[retention]\nusage_days = 3\n");
        let err = load_from(Some(f.path())).unwrap_err().to_string();
        assert!(
            err.contains("retention") && err.contains("at least 7"),
            "{err}"
        );
        let f = file("[retention]\nusage_days = 0\nmessages_days = 14\n");
        let config = load_from(Some(f.path())).unwrap();
        assert_eq!(
            (config.retention.usage_days, config.retention.messages_days),
            (0, 14)
        );
    }
}
