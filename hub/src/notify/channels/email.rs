//! E-mail over SMTP (lettre): STARTTLS or TLS on rustls (the system's roots plus a CA file),
//! a plain-text and an HTML part.
//!
//! A relay that answers 250 has accepted the message, not delivered it: the row says `sent`.
//! Reasons stored on rows name the cause (TLS, unreachable, the SMTP code) but never the
//! password, and the recipient's address only masked.

use std::path::Path;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{ChannelSetupError, SendError, Sent};
use crate::notify::config::{EmailConfig, EmailSecurity, Secret, resolve_secret};
use crate::notify::message::Message;
use crate::notify::outbox::WebhookResult;
use crate::notify::tls::{error_chain, install_ring_provider, is_tls_failure, load_ca_file};
use crate::privacy::mask;

/// The SMTP transport of `[notify.email]`.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// Kept only to scrub it from any text a failure carries.
    password: Option<Secret>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

fn invalid(key: &str, detail: impl Into<String>) -> ChannelSetupError {
    ChannelSetupError::Invalid {
        key: format!("notify.email.{key}"),
        detail: detail.into(),
    }
}

/// The port `security` implies when none is given.
pub fn default_port(security: EmailSecurity) -> u16 {
    match security {
        EmailSecurity::Starttls => 587,
        EmailSecurity::Tls => 465,
        EmailSecurity::None => 25,
    }
}

impl Mailer {
    /// `default_ca` is `notify.ca_file`, trusted when the section names no `ca_file` of its own.
    pub fn build(
        config: &EmailConfig,
        default_ca: Option<&Path>,
        timeout: Duration,
    ) -> Result<Mailer, ChannelSetupError> {
        install_ring_provider();
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| invalid("from", format!("{:?} is not a mailbox: {e}", config.from)))?;
        let password = resolve_secret(
            "notify.email.password",
            config.password.as_ref(),
            config.password_env.as_deref(),
        )
        .map_err(|detail| ChannelSetupError::Invalid {
            key: "notify.email.password".into(),
            detail,
        })?;
        let server = config.server.trim();
        let port = config.port.unwrap_or(default_port(config.security));
        let tls = match config.security {
            EmailSecurity::None => Tls::None,
            security => {
                let mut params = TlsParameters::builder(server.to_owned());
                if let Some(ca) = config.ca_file.as_deref().or(default_ca) {
                    for cert in load_ca_file(ca)? {
                        let cert = Certificate::from_der(cert.to_vec())
                            .map_err(|e| invalid("ca_file", format!("{}: {e}", ca.display())))?;
                        params = params.add_root_certificate(cert);
                    }
                }
                let params = params
                    .build_rustls()
                    .map_err(|e| invalid("server", format!("cannot set up TLS for {server:?}: {e}")))?;
                if security == EmailSecurity::Starttls {
                    // Required: a server (or a man in the middle) that does not offer STARTTLS
                    // gets no password and no message in clear.
                    Tls::Required(params)
                } else {
                    Tls::Wrapper(params)
                }
            }
        };
        // lettre calls a builder "dangerous" because it starts without TLS: `tls` is set right
        // here from `security`, and `none` is refused by the config check off loopback.
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server)
            .port(port)
            .tls(tls)
            .timeout(Some(timeout));
        match (&config.username, &password) {
            (Some(user), Some(pass)) => {
                builder = builder.credentials(Credentials::new(user.clone(), pass.expose().to_owned()));
            }
            (None, None) => {}
            (Some(_), None) => return Err(invalid("password", "username is set: give password or password_env")),
            (None, Some(_)) => return Err(invalid("username", "a password needs a username")),
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            password,
        })
    }

    /// Sends `msg` to `to`: Subject = the title, a multipart/alternative text + HTML body.
    pub async fn send(&self, to: &str, msg: &Message) -> Result<Sent, SendError> {
        let masked = mask::email(to);
        let to_box: Mailbox = to
            .parse()
            .map_err(|_| SendError::new(WebhookResult::Other, format!("{masked} is not an e-mail address")))?;
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to_box)
            .subject(msg.title.clone())
            .multipart(MultiPart::alternative_plain_html(msg.text.clone(), msg.html.clone()))
            .map_err(|e| SendError::new(WebhookResult::Other, format!("cannot build the e-mail: {e}")))?;
        match self.transport.send(email).await {
            Ok(response) if response.is_positive() => Ok(Sent::Accepted),
            Ok(response) => Err(SendError::new(
                WebhookResult::Refused,
                format!("the SMTP server answered {}", response.code()),
            )),
            Err(e) => Err(self.classify(&e, to, &masked)),
        }
    }

    fn classify(&self, e: &lettre::transport::smtp::Error, to: &str, masked: &str) -> SendError {
        let text = self.scrub(&error_chain(e), to, masked);
        if let Some(code) = e.status() {
            let said = self.scrub(&innermost(e), to, masked);
            return SendError::new(
                WebhookResult::Refused,
                format!("the SMTP server refused ({code}): {said}"),
            );
        }
        if e.is_tls() || is_tls_failure(e) {
            // lettre wraps the handshake's error in two "Connection error" layers: the
            // innermost cause is the reason.
            let cause = self.scrub(&innermost(e), to, masked);
            return SendError::new(
                WebhookResult::Tls,
                format!(
                    "TLS with the SMTP server failed: {cause}; its certificate must chain to the system's roots or to the ca_file"
                ),
            );
        }
        if e.is_timeout() {
            return SendError::new(WebhookResult::Unreachable, "the SMTP server did not answer in time");
        }
        if e.is_client() {
            // STARTTLS not offered, no common AUTH mechanism: the server is reachable but
            // cannot be used as configured.
            return SendError::new(WebhookResult::Other, format!("SMTP: {text}"));
        }
        SendError::new(
            WebhookResult::Unreachable,
            format!("cannot reach the SMTP server: {text}"),
        )
    }

    /// A server's text might echo what it was sent: never the password (nor its base64, as
    /// AUTH PLAIN / LOGIN send it), the recipient only masked.
    fn scrub(&self, text: &str, to: &str, masked: &str) -> String {
        let mut out = text.replace(to, masked);
        if let Some(p) = &self.password {
            use base64::Engine as _;
            let p = p.expose();
            if !p.is_empty() {
                out = out
                    .replace(p, "<password>")
                    .replace(&base64::engine::general_purpose::STANDARD.encode(p), "<password>");
            }
        }
        out
    }
}

fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(s) = last.source() {
        last = s;
    }
    last.to_string()
}
