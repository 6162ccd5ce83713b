//! Where one person's notifications go: the `channel` of a `[[roster]]` entry or a guard
//! (pure parsing; what each channel needs is in `[notify]`, see [`super::config`]).
//!
//! | channel | goes |
//! |---|---|
//! | `log` | to the hub's log (names as initials) |
//! | `http://…`, `https://…` | a JSON POST signed `X-Gatehouse-Signature` (HMAC-SHA256) |
//! | `robot:<name>` | the chat robot `<name>` of `[[notify.robots]]` |
//! | `mailto:<address>` | e-mail through `[notify.email]` |
//! | `sms:<number>` | an SMS through `[notify.sms]` (`+` and digits) |

/// A parsed channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Log,
    Webhook(String),
    Robot(String),
    Email(String),
    Sms(String),
}

impl Address {
    /// Parses a channel; the error says what was expected.
    pub fn parse(channel: &str) -> Result<Address, String> {
        if channel == "log" {
            return Ok(Address::Log);
        }
        if let Some(rest) = channel
            .strip_prefix("http://")
            .or_else(|| channel.strip_prefix("https://"))
        {
            if rest.is_empty() || url::Url::parse(channel).is_err() {
                return Err(format!("{channel:?} is not a valid URL"));
            }
            return Ok(Address::Webhook(channel.to_owned()));
        }
        if let Some(name) = channel.strip_prefix("robot:") {
            if name.is_empty() {
                return Err("robot: needs the name of a [[notify.robots]] entry".into());
            }
            return Ok(Address::Robot(name.to_owned()));
        }
        if let Some(addr) = channel.strip_prefix("mailto:") {
            let ok = addr.parse::<lettre::Address>().is_ok();
            if !ok {
                return Err(format!("{addr:?} is not an e-mail address"));
            }
            return Ok(Address::Email(addr.to_owned()));
        }
        if let Some(number) = channel.strip_prefix("sms:") {
            let digits = number.strip_prefix('+').unwrap_or(number);
            if digits.len() < 3 || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{number:?} is not a phone number (+ and digits)"));
            }
            return Ok(Address::Sms(number.to_owned()));
        }
        Err(format!(
            "expected \"log\", an http:// or https:// URL, robot:<name>, mailto:<address> or sms:<number>, got {channel:?}"
        ))
    }

    /// The channel's kind as the API and the board show it (`log`, `webhook`, `robot`,
    /// `email`, `sms`); a robot's platform is in `[notify.robots]`.
    pub fn kind(&self) -> &'static str {
        match self {
            Address::Log => "log",
            Address::Webhook(_) => "webhook",
            Address::Robot(_) => "robot",
            Address::Email(_) => "email",
            Address::Sms(_) => "sms",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_channel_form_parses_and_a_wrong_one_says_what_was_expected() {
        assert_eq!(Address::parse("log"), Ok(Address::Log));
        assert_eq!(
            Address::parse("https://h/x"),
            Ok(Address::Webhook("https://h/x".into()))
        );
        assert_eq!(Address::parse("robot:facility"), Ok(Address::Robot("facility".into())));
        assert_eq!(
            Address::parse("mailto:ops@example.com"),
            Ok(Address::Email("ops@example.com".into()))
        );
        assert_eq!(
            Address::parse("sms:+8613800000000"),
            Ok(Address::Sms("+8613800000000".into()))
        );
        for bad in ["", "http://", "robot:", "mailto:nobody", "sms:12a", "ftp://x"] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
        assert!(Address::parse("x").unwrap_err().contains("robot:<name>"));
    }
}
