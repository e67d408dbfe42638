//! Outgoing mail over SMTP (`[email]`, ADR 0021), with `lettre` on rustls: no OpenSSL. Only
//! the outbox worker sends, so a slow or failing server never holds up a buyer's request and
//! a mail that could not be handed over is retried.

use std::time::Duration;

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
};
use marketlink_core::Secret;
use serde::Deserialize;

use crate::webhooks::DeliveryError;

/// `[email]`: how mail leaves; absent, nothing is mailed and operators confirm addresses.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    /// `smtp://host:25` (plain, for a relay without credentials), `smtp://user:pass@host:587
    /// ?tls=required` (STARTTLS) or `smtps://user:pass@host:465` (TLS from the start).
    pub smtp_url: Secret,
    /// The sender, e.g. `Acme <no-reply@acme.example>`.
    pub from: String,
}

impl std::fmt::Debug for EmailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSettings")
            .field(
                "smtp_url",
                &marketlink_store::redact_url(self.smtp_url.expose()),
            )
            .field("from", &self.from)
            .finish()
    }
}

impl EmailSettings {
    /// Checks the URL and the sender. An error names the key (`email.smtp_url`,
    /// `email.from`) and what is wrong, never the password.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let url_error = |message: String| ("email.smtp_url", message);
        self.transport().map_err(url_error)?;
        self.sender().map_err(|message| ("email.from", message))?;
        let url = url::Url::parse(self.smtp_url.expose())
            .map_err(|e| url_error(format!("not a URL: {e}")))?;
        let tls = url.query_pairs().any(|(k, _)| k == "tls");
        if url.scheme() == "smtp" && !tls && url.password().is_some() {
            return Err(url_error(
                "a password over plain smtp:// would travel in clear: add `?tls=required` \
                 (STARTTLS) or use smtps://"
                    .into(),
            ));
        }
        Ok(())
    }

    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(self.smtp_url.expose())
            .map_err(|e| {
                format!(
                    "`{}` is not a usable SMTP URL (smtp:// or smtps://): {e}",
                    marketlink_store::redact_url(self.smtp_url.expose())
                )
            })?;
        // A stuck server must not hold an outbox slot for lettre's default minute.
        Ok(builder.timeout(Some(Duration::from_secs(20))).build())
    }

    fn sender(&self) -> Result<Mailbox, String> {
        self.from
            .parse()
            .map_err(|e| format!("`{}` is not a sender address: {e}", self.from))
    }
}

/// A configured way to send mail, with what every message needs to say where it comes from.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The server's public URL, which links in mail point to.
    pub(crate) public_url: String,
    /// The vendor's name, for subjects and greetings.
    pub(crate) brand: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// A mailer for `settings`; links point to `public_url`, messages are signed `brand`.
    pub fn new(settings: &EmailSettings, public_url: &str, brand: &str) -> Result<Self, String> {
        settings
            .validate()
            .map_err(|(key, message)| format!("`{key}`: {message}"))?;
        Ok(Self {
            transport: settings.transport()?,
            from: settings.sender()?,
            public_url: public_url.trim_end_matches('/').to_owned(),
            brand: brand.to_owned(),
        })
    }

    /// Hands one plain-text message to the SMTP server. A refusal the server calls permanent
    /// (5xx: no such mailbox, relaying denied) is not retried; anything else is.
    pub(crate) async fn send(
        &self,
        to: &str,
        subject: &str,
        body: String,
    ) -> Result<(), DeliveryError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| DeliveryError::Permanent(format!("`{to}` is not an address: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| DeliveryError::Permanent(format!("cannot build the message: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_permanent() => Err(DeliveryError::Permanent(format!(
                "the SMTP server refused the message: {error}"
            ))),
            Err(error) => Err(DeliveryError::Retry(
                format!("cannot hand the message to the SMTP server: {error}"),
                None,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> EmailSettings {
        EmailSettings {
            smtp_url: Secret::new(url),
            from: "Acme <no-reply@acme.example>".into(),
        }
    }

    #[test]
    fn urls_are_checked_and_passwords_never_printed() {
        settings("smtp://127.0.0.1:2525").validate().unwrap();
        settings("smtps://u:hunter2@mail.example")
            .validate()
            .unwrap();
        settings("smtp://u:hunter2@mail.example:587?tls=required")
            .validate()
            .unwrap();
        let clear = settings("smtp://u:hunter2@mail.example:587").validate();
        assert!(clear.unwrap_err().1.contains("in clear"));
        let (key, bad) = settings("http://u:hunter2@mail.example")
            .validate()
            .unwrap_err();
        assert_eq!(key, "email.smtp_url");
        assert!(!bad.contains("hunter2"), "{bad}");
        assert!(!format!("{:?}", settings("smtps://u:hunter2@mail.example")).contains("hunter2"));
        let mut sender = settings("smtp://127.0.0.1:2525");
        sender.from = "not an address".into();
        assert_eq!(sender.validate().unwrap_err().0, "email.from");
    }
}
