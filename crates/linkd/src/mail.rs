//! Mail to people: composing a message (plain text and HTML, in the
//! person's language, with the operator's brand) into an outbox payload,
//! and sending payloads over SMTP with `lettre` as the outbox's sender of
//! `mail` messages (`--smtp-url`, `--mail-from`).

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use crate::Config;
use crate::brand::Brand;
use crate::i18n::{Lang, Text};
use crate::outbox::{Deliver, Delivery};
use crate::store::{OutboxKind, OutboxMessage, Timestamp};

/// How long one SMTP conversation may take before it counts as failed
/// (well within the outbox lease).
const SMTP_TIMEOUT: Duration = Duration::from_secs(60);

/// Checks the mail settings at start-up: a sender is needed with a server,
/// and both must parse.
pub fn validate(config: &Config) -> Result<(), String> {
    let Some(url) = &config.smtp_url else {
        return Ok(());
    };
    AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .map_err(|e| format!("--smtp-url {}: {e}", crate::store::redact_url(url)))?;
    match &config.mail_from {
        None => Err("--smtp-url needs --mail-from, the sender of linkd's mail".into()),
        Some(from) => from
            .parse::<Mailbox>()
            .map(drop)
            .map_err(|e| format!("--mail-from {from:?}: {e}")),
    }
}

/// A rendered mail as the outbox keeps it until it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailPayload {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A mail to compose: what it says, in words from the catalog.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub lang: Lang,
    pub subject: Text,
    /// Paragraphs, in order.
    pub lines: Vec<Text>,
    /// A button: its label and the link it opens.
    pub action: Option<(Text, String)>,
    /// Small print under the rest (why the person got this mail).
    pub footer: Option<Text>,
}

static HTML: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    // Part of the binary; a broken template is a build defect the unit
    // tests catch.
    if let Err(e) = env.add_template(
        "message.html",
        include_str!("../templates/mail/message.html"),
    ) {
        tracing::error!(error = %e, "mail template does not parse");
    }
    env
});

impl Mail {
    /// The payload: subject, plain text and HTML in the mail's language.
    pub fn render(&self, brand: &Brand) -> MailPayload {
        let lang = self.lang;
        let subject = self.subject.in_lang(lang);
        let lines: Vec<String> = self.lines.iter().map(|l| l.in_lang(lang)).collect();
        let action = self
            .action
            .as_ref()
            .map(|(label, url)| (label.in_lang(lang), url.clone()));
        let footer = self.footer.as_ref().map(|f| f.in_lang(lang));

        let mut text = lines.join("\n\n");
        if let Some((label, url)) = &action {
            text.push_str(&format!("\n\n{label}:\n{url}"));
        }
        if let Some(footer) = &footer {
            text.push_str(&format!("\n\n{footer}"));
        }
        // RFC 3676 §4.3: "-- " on its own line starts the signature.
        text.push_str(&format!("\n\n-- \n{}\n", brand.product_name));

        let (action_label, action_url) = action.unzip();
        let html = HTML
            .get_template("message.html")
            .and_then(|t| {
                t.render(minijinja::context! {
                    lang => lang.tag(),
                    subject => &subject,
                    product => &brand.product_name,
                    accent => brand.accent.to_string(),
                    lines => &lines,
                    action_label => action_label,
                    action_url => action_url,
                    footer => footer,
                })
            })
            .unwrap_or_else(|e| {
                // The plain text still says everything.
                tracing::error!(error = %e, "mail template failed to render");
                String::new()
            });
        MailPayload {
            to: self.to.clone(),
            subject,
            text,
            html,
        }
    }

    /// The outbox message that sends this mail.
    pub fn to_outbox(&self, brand: &Brand, now: Timestamp) -> OutboxMessage {
        let payload = serde_json::to_string(&self.render(brand)).unwrap_or_default();
        crate::outbox::message(OutboxKind::Mail, payload, now)
    }
}

/// Sends `mail` messages through the operator's SMTP server.
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The right-hand side of Message-IDs.
    domain: String,
}

impl SmtpSender {
    /// The sender the configuration asks for, if any.
    pub fn from_config(config: &Config) -> Result<Option<SmtpSender>, String> {
        validate(config)?;
        let (Some(url), Some(from)) = (&config.smtp_url, &config.mail_from) else {
            return Ok(None);
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| e.to_string())?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        let from: Mailbox = from.parse().map_err(|e| format!("--mail-from: {e}"))?;
        let domain = from.email.domain().to_string();
        Ok(Some(SmtpSender {
            transport,
            from,
            domain,
        }))
    }
}

#[async_trait]
impl Deliver for SmtpSender {
    fn kind(&self) -> OutboxKind {
        OutboxKind::Mail
    }

    async fn deliver(&self, message: &OutboxMessage) -> Delivery {
        let payload: MailPayload = match serde_json::from_str(&message.payload) {
            Ok(p) => p,
            Err(e) => return Delivery::Rejected(format!("unreadable mail payload: {e}")),
        };
        let to: Mailbox = match payload.to.parse() {
            Ok(to) => to,
            Err(e) => return Delivery::Rejected(format!("recipient {:?}: {e}", payload.to)),
        };
        // The outbox id names the message, so a copy sent again after a
        // crash carries the same Message-ID (RFC 5322 §3.6.4) and
        // receivers can tell it is one message.
        let built = Message::builder()
            .from(self.from.clone())
            .to(to)
            .message_id(Some(format!("<{}@{}>", message.id, self.domain)))
            .subject(payload.subject)
            .multipart(MultiPart::alternative_plain_html(
                payload.text,
                payload.html,
            ));
        let email = match built {
            Ok(m) => m,
            Err(e) => return Delivery::Rejected(format!("mail could not be built: {e}")),
        };
        match self.transport.send(email).await {
            Ok(_) => Delivery::Sent,
            // RFC 5321 §4.2.1: 5yz is permanent; everything else (4yz,
            // no connection, a timeout) may pass.
            Err(e) if e.is_permanent() => Delivery::Rejected(e.to_string()),
            Err(e) => Delivery::Retry(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brand() -> Brand {
        Brand::from_config(&Config::defaults())
            .expect("default brand")
            .0
    }

    #[test]
    fn a_mail_renders_text_and_escaped_html() {
        let mail = Mail {
            to: "ada@example.com".into(),
            lang: Lang::En,
            subject: Text::Plain("Hello <there>".into()),
            lines: vec![Text::Plain("Line & one".into())],
            action: Some((
                Text::Plain("Open".into()),
                "https://x.test/a?b=1&c=2".into(),
            )),
            footer: None,
        };
        let p = mail.render(&brand());
        assert_eq!(p.subject, "Hello <there>");
        assert!(p.text.contains("Line & one"));
        assert!(p.text.contains("Open:\nhttps://x.test/a?b=1&c=2"));
        assert!(p.text.ends_with("-- \nlinkd\n"));
        assert!(p.html.contains("Hello &lt;there&gt;"), "{}", p.html);
        assert!(p.html.contains("Line &amp; one"));
        assert!(p.html.contains("lang=\"en\""));
    }

    #[test]
    fn smtp_settings_are_checked() {
        let mut config = Config::defaults();
        assert_eq!(validate(&config), Ok(()));
        config.smtp_url = Some("smtp://127.0.0.1:2525".into());
        assert!(validate(&config).is_err(), "no sender");
        config.mail_from = Some("linkd <no-reply@example.com>".into());
        assert_eq!(validate(&config), Ok(()));
        config.mail_from = Some("not an address".into());
        assert!(validate(&config).is_err());
        config.mail_from = Some("no-reply@example.com".into());
        config.smtp_url = Some("gopher://x".into());
        assert!(validate(&config).is_err());
    }
}
