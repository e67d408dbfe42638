//! Where the adapter's AWS credentials come from (ADR 0013): static keys from
//! `[aws.credentials]` when configured (the sandbox, an IAM user), otherwise the standard AWS
//! chain, in the order and with the providers of `aws-config`'s `DefaultCredentialsChain`:
//! environment variables, the shared profile (static keys, SSO, `credential_process`, assumed
//! roles), web identity (EKS IRSA), container credentials (ECS task role, EKS Pod Identity),
//! then EC2 instance metadata.
//!
//! The chain is assembled here rather than taken whole so that each link can mark the
//! credentials it hands out with its [`Source`]: `aws-credential-types` keeps a provider's
//! name private, and `marketlink doctor` must say which source is in use.
//!
//! Every SDK client shares one provider and one identity cache, so temporary credentials are
//! fetched once and refreshed by the SDK before they expire, whichever client asks first.

use aws_config::{
    ecs::EcsCredentialsProvider, environment::EnvironmentVariableCredentialsProvider,
    imds::credentials::ImdsCredentialsProvider, meta::credentials::CredentialsProviderChain,
    profile::ProfileFileCredentialsProvider, provider_config::ProviderConfig,
    web_identity_token::WebIdentityTokenCredentialsProvider,
};
use aws_credential_types::{
    Credentials,
    credential_feature::AwsCredentialFeature,
    provider::{ProvideCredentials, SharedCredentialsProvider, future},
};
use aws_sdk_sqs::config::{IdentityCache, Region, SharedIdentityCache};
use tokio::sync::OnceCell;

use crate::config::AwsConfig;

/// Which link of the chain (or the configuration) gave the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Config,
    Environment,
    Profile,
    WebIdentity,
    Container,
    InstanceMetadata,
}

/// The credentials every client signs with, and the cache they share.
#[derive(Clone)]
pub(crate) struct AwsCredentials {
    pub provider: SharedCredentialsProvider,
    pub cache: SharedIdentityCache,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials").finish_non_exhaustive()
    }
}

impl AwsCredentials {
    /// Static keys when configured, else the chain (assembled on first use: its profile
    /// provider is built asynchronously, and `AwsProvider::new` makes no network calls).
    pub fn from_config(config: &AwsConfig) -> Self {
        let provider = match &config.credentials {
            Some(keys) => {
                let mut credentials = Credentials::new(
                    keys.access_key_id.clone(),
                    keys.secret_access_key.expose().to_owned(),
                    keys.session_token.as_ref().map(|t| t.expose().to_owned()),
                    None,
                    "marketlink-config",
                );
                credentials.set_property(Source::Config);
                SharedCredentialsProvider::new(credentials)
            }
            None => SharedCredentialsProvider::new(LazyChain {
                region: Region::new(config.region.clone()),
                chain: OnceCell::new(),
            }),
        };
        Self {
            provider,
            cache: IdentityCache::lazy().build(),
        }
    }
}

/// One link of the chain, marking what it hands out with its source.
#[derive(Debug)]
struct Marked<P> {
    source: Source,
    inner: P,
}

impl<P: ProvideCredentials> ProvideCredentials for Marked<P> {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let mut credentials = self.inner.provide_credentials().await?;
            credentials.set_property(self.source);
            Ok(credentials)
        })
    }
}

fn marked<P>(source: Source, inner: P) -> Marked<P> {
    Marked { source, inner }
}

/// The chain, assembled when credentials are first needed.
#[derive(Debug)]
struct LazyChain {
    /// For the STS calls of web identity and assumed roles.
    region: Region,
    chain: OnceCell<CredentialsProviderChain>,
}

/// `DefaultCredentialsChain::build` of aws-config, with each link marked.
fn default_chain(region: &Region) -> CredentialsProviderChain {
    let conf = ProviderConfig::default().with_region(Some(region.clone()));
    CredentialsProviderChain::first_try(
        "Environment",
        marked(
            Source::Environment,
            EnvironmentVariableCredentialsProvider::new(),
        ),
    )
    .or_else(
        "Profile",
        marked(
            Source::Profile,
            ProfileFileCredentialsProvider::builder()
                .configure(&conf)
                .build(),
        ),
    )
    .or_else(
        "WebIdentityToken",
        marked(
            Source::WebIdentity,
            WebIdentityTokenCredentialsProvider::builder()
                .configure(&conf)
                .build(),
        ),
    )
    .or_else(
        "EcsContainer",
        marked(
            Source::Container,
            EcsCredentialsProvider::builder().configure(&conf).build(),
        ),
    )
    .or_else(
        "Ec2InstanceMetadata",
        marked(
            Source::InstanceMetadata,
            ImdsCredentialsProvider::builder().configure(&conf).build(),
        ),
    )
}

impl ProvideCredentials for LazyChain {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let chain = self
                .chain
                .get_or_init(|| async { default_chain(&self.region) })
                .await;
            chain.provide_credentials().await
        })
    }
}

/// Which source answered, in words an operator recognises (`marketlink doctor`).
pub(crate) fn describe_source(credentials: &Credentials) -> String {
    let has = |feature| {
        credentials
            .get_property::<Vec<AwsCredentialFeature>>()
            .is_some_and(|features| features.contains(&feature))
    };
    match credentials.get_property::<Source>() {
        Some(Source::Config) => "static keys from aws.credentials".into(),
        Some(Source::Environment) => {
            "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)".into()
        }
        // The profile's own kind, as aws-config records it for its user-agent metrics.
        Some(Source::Profile) if has(AwsCredentialFeature::CredentialsSso) => format!(
            "IAM Identity Center (SSO) through the shared profile {}",
            profile_name()
        ),
        Some(Source::Profile) if has(AwsCredentialFeature::CredentialsProcess) => format!(
            "the credential_process of the shared profile {}",
            profile_name()
        ),
        Some(Source::Profile) if has(AwsCredentialFeature::CredentialsStsAssumeRole) => {
            format!("a role assumed by the shared profile {}", profile_name())
        }
        Some(Source::Profile) => format!("the shared profile {}", profile_name()),
        Some(Source::WebIdentity) => {
            "web identity (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, e.g. EKS IRSA)".into()
        }
        Some(Source::Container) => {
            "container credentials (ECS task role or EKS Pod Identity, AWS_CONTAINER_CREDENTIALS_*)"
                .into()
        }
        Some(Source::InstanceMetadata) => {
            "the EC2 instance metadata service (the instance's role)".into()
        }
        None => "an unnamed credentials provider".into(),
    }
}

fn profile_name() -> String {
    match std::env::var("AWS_PROFILE") {
        Ok(name) if !name.is_empty() => format!("`{name}` (AWS_PROFILE)"),
        _ => "`default`".into(),
    }
}

/// Where the secret of these credentials is set, for "the secret is wrong" findings.
pub(crate) fn secret_setting(credentials: &Credentials) -> &'static str {
    match credentials.get_property::<Source>() {
        Some(Source::Config) => "aws.credentials.secret_access_key",
        Some(Source::Environment) => "AWS_SECRET_ACCESS_KEY",
        Some(Source::Profile) => "aws_secret_access_key of the shared profile",
        _ => "the secret access key",
    }
}

/// Whether these credentials are long-lived keys, which nothing refreshes.
pub(crate) fn is_static(credentials: &Credentials) -> bool {
    credentials.expiry().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(source: Source) -> Credentials {
        let mut credentials = Credentials::new("AKIAEXAMPLE", "secret", None, None, "test");
        credentials.set_property(source);
        credentials
    }

    #[test]
    fn sources_are_named_in_plain_words() {
        assert_eq!(
            describe_source(&from(Source::Config)),
            "static keys from aws.credentials"
        );
        let cases = [
            (Source::Environment, "AWS_ACCESS_KEY_ID"),
            (Source::Profile, "shared profile"),
            (Source::WebIdentity, "web identity"),
            (Source::Container, "ECS task role"),
            (Source::InstanceMetadata, "instance metadata"),
        ];
        for (source, words) in cases {
            let described = describe_source(&from(source));
            assert!(described.contains(words), "{source:?}: {described}");
            assert!(!described.contains("secret"), "{described}");
        }
        let mut sso = from(Source::Profile);
        sso.get_property_mut_or_default::<Vec<AwsCredentialFeature>>()
            .push(AwsCredentialFeature::CredentialsSso);
        assert!(describe_source(&sso).contains("SSO"));
        assert_eq!(
            secret_setting(&from(Source::Environment)),
            "AWS_SECRET_ACCESS_KEY"
        );
        assert!(is_static(&from(Source::Config)));
    }

    #[tokio::test]
    async fn configured_keys_win_over_the_chain() {
        let config: AwsConfig = serde_json::from_value(serde_json::json!({
            "credentials": {"access_key_id": "AKIACONFIG", "secret_access_key": "s"},
        }))
        .unwrap();
        let creds = AwsCredentials::from_config(&config)
            .provider
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(creds.access_key_id(), "AKIACONFIG");
        assert_eq!(creds.get_property::<Source>(), Some(&Source::Config));
    }
}
