//! The hub's configuration file (TOML). Key names are a contract; see the crate docs.
//!
//! Everything is checked at load time: unknown keys, bad addresses, rules that define no
//! condition, rules naming an unknown estate. Errors name the key that is wrong.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::alarms::Priority;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    pub hub: HubSection,
    #[serde(default)]
    pub estates: Vec<EstateConfig>,
    #[serde(default)]
    pub rules: RulesConfig,
}

/// `[hub]`: where to listen and where to store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSection {
    /// Address of the gRPC server (`GatewayLink`, health, reflection). Port 0 picks one.
    pub grpc_listen: SocketAddr,
    /// Address of the HTTP/JSON API. Port 0 picks one.
    pub http_listen: SocketAddr,
    /// `sqlite://path/to/hub.db` (relative paths are relative to the working directory)
    /// or `postgres://...` (not yet available).
    pub database: String,
    /// This hub's name, sent to gateways in `Welcome`.
    #[serde(default = "default_hub_id")]
    pub hub_id: String,
}

fn default_hub_id() -> String {
    "hub".to_owned()
}

/// `[[estates]]`: one estate (小区) this hub serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstateConfig {
    pub id: String,
    pub name: String,
    /// IANA time zone of the estate (shifts are in local time). Default `UTC`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

fn default_timezone() -> String {
    "UTC".to_owned()
}

/// `[rules]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    #[serde(default)]
    pub points: Vec<PointRuleConfig>,
}

/// `[[rules.points]]`: a limit rule (`low` and/or `high`) or a state rule (`when`) on a point.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointRuleConfig {
    pub point: String,
    /// Only readings from this device (default: any device).
    pub device: Option<String>,
    /// Only readings from this estate (default: any estate).
    pub estate: Option<String>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// A limit alarm clears only once the value is back past the limit by this much.
    #[serde(default)]
    pub deadband: f64,
    /// On-delay: the condition must hold this long before the alarm activates.
    #[serde(default)]
    pub delay_s: u32,
    /// State rule: alarm while the boolean point equals this (value 1.0 = true).
    pub when: Option<bool>,
    pub priority: Priority,
    /// Text shown with the alarm (default: generated from the rule).
    pub message: Option<String>,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid configuration: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("invalid configuration: {key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The storage backend named by `hub.database`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(String),
    Postgres(String),
}

impl HubConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<HubConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Parses and validates a configuration document.
    pub fn from_toml(text: &str) -> Result<HubConfig, ConfigError> {
        let config: HubConfig = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Which backend `hub.database` names. Valid after [`HubConfig::validate`].
    pub fn database_url(&self) -> Result<DatabaseUrl, ConfigError> {
        let url = self.hub.database.trim();
        if url.starts_with("sqlite:") {
            Ok(DatabaseUrl::Sqlite(url.to_owned()))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(url.to_owned()))
        } else {
            Err(invalid(
                "hub.database",
                format!("expected sqlite://PATH or postgres://..., got {url:?}"),
            ))
        }
    }

    /// Checks cross-references and values that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.database_url()?;
        check_id("hub.hub_id", &self.hub.hub_id)?;

        let mut estate_ids = HashSet::new();
        for (i, estate) in self.estates.iter().enumerate() {
            check_id(&format!("estates[{i}].id"), &estate.id)?;
            if !estate_ids.insert(estate.id.as_str()) {
                return Err(invalid(
                    format!("estates[{i}].id"),
                    format!("estate {:?} is defined twice", estate.id),
                ));
            }
            if estate.name.trim().is_empty() {
                return Err(invalid(format!("estates[{i}].name"), "must not be empty"));
            }
            let tz = estate.timezone.trim();
            if tz.is_empty() || tz.contains(char::is_whitespace) {
                return Err(invalid(
                    format!("estates[{i}].timezone"),
                    format!("{:?} is not an IANA time zone name", estate.timezone),
                ));
            }
        }

        let mut seen = HashSet::new();
        for (i, rule) in self.rules.points.iter().enumerate() {
            let key = |field: &str| format!("rules.points[{i}].{field}");
            check_id(&key("point"), &rule.point)?;
            if let Some(device) = &rule.device {
                check_id(&key("device"), device)?;
            }
            if let Some(estate) = &rule.estate
                && !estate_ids.contains(estate.as_str())
            {
                return Err(invalid(
                    key("estate"),
                    format!("unknown estate {estate:?} (not in [[estates]])"),
                ));
            }
            for (field, v) in [("low", rule.low), ("high", rule.high)] {
                if let Some(v) = v
                    && !v.is_finite()
                {
                    return Err(invalid(key(field), "must be a finite number"));
                }
            }
            if !rule.deadband.is_finite() || rule.deadband < 0.0 {
                return Err(invalid(key("deadband"), "must be a number >= 0"));
            }
            let is_limit = rule.low.is_some() || rule.high.is_some();
            match (is_limit, rule.when) {
                (false, None) => {
                    return Err(invalid(
                        format!("rules.points[{i}]"),
                        format!("rule for point {:?} has neither low/high nor when", rule.point),
                    ));
                }
                (true, Some(_)) => {
                    return Err(invalid(
                        key("when"),
                        "a rule is either a limit rule (low/high) or a state rule (when), not both",
                    ));
                }
                (false, Some(_)) if rule.deadband != 0.0 => {
                    return Err(invalid(key("deadband"), "applies only to limit rules"));
                }
                _ => {}
            }
            if let (Some(low), Some(high)) = (rule.low, rule.high)
                && low >= high
            {
                return Err(invalid(key("low"), format!("low ({low}) must be below high ({high})")));
            }
            let conditions: &[&str] = if is_limit {
                match (rule.low.is_some(), rule.high.is_some()) {
                    (true, true) => &["low", "high"],
                    (true, false) => &["low"],
                    _ => &["high"],
                }
            } else {
                &["state"]
            };
            for c in conditions {
                let identity = (rule.point.clone(), rule.device.clone(), rule.estate.clone(), *c);
                if !seen.insert(identity) {
                    return Err(invalid(
                        format!("rules.points[{i}]"),
                        format!(
                            "a rule with the same point {:?}, device and estate already defines the {c} condition",
                            rule.point
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_id(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    if value.len() > 128 || value.chars().any(char::is_control) {
        return Err(invalid(
            key,
            format!("{value:?} is not a valid identifier (at most 128 characters, no control characters)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[hub]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
database = "sqlite://data/hub.db"

[[estates]]
id = "estate-a"
name = "Riverside Gardens"
timezone = "Asia/Shanghai"
"#;

    fn with(extra: &str) -> Result<HubConfig, ConfigError> {
        HubConfig::from_toml(&format!("{BASE}{extra}"))
    }

    #[test]
    fn example_configuration_loads_with_defaults() {
        let c = with(
            r#"
[[rules.points]]
point = "outlet_pressure"
low = 0.25
deadband = 0.02
delay_s = 5
priority = "P3"

[[rules.points]]
point = "pump1_fault"
when = true
priority = "P3"
"#,
        )
        .unwrap();
        assert_eq!(c.hub.hub_id, "hub");
        assert_eq!(c.rules.points.len(), 2);
        assert_eq!(c.rules.points[0].priority, Priority::P3);
        assert_eq!(
            c.database_url().unwrap(),
            DatabaseUrl::Sqlite("sqlite://data/hub.db".into())
        );
    }

    #[test]
    fn unknown_key_is_rejected_and_named() {
        let err = with("[[rules.points]]\npoint = \"p\"\nlow = 1.0\npriority = \"P3\"\nlimit = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("limit"), "{err}");
    }

    #[test]
    fn rule_without_condition_is_rejected() {
        let err = with("[[rules.points]]\npoint = \"p\"\npriority = \"P3\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rules.points[0]"), "{err}");
        assert!(err.contains("neither low/high nor when"), "{err}");
    }

    #[test]
    fn rule_naming_unknown_estate_is_rejected() {
        let err = with("[[rules.points]]\npoint = \"p\"\nhigh = 2.0\nestate = \"nowhere\"\npriority = \"P2\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rules.points[0].estate"), "{err}");
    }

    #[test]
    fn bad_priority_and_bad_address_are_rejected() {
        assert!(with("[[rules.points]]\npoint = \"p\"\nhigh = 2.0\npriority = \"P9\"\n").is_err());
        let err = HubConfig::from_toml(&BASE.replace("127.0.0.1:0\"\nhttp", "nowhere\"\nhttp"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("grpc_listen"), "{err}");
    }

    #[test]
    fn low_above_high_and_unknown_database_scheme_are_rejected() {
        assert!(with("[[rules.points]]\npoint = \"p\"\nlow = 3.0\nhigh = 2.0\npriority = \"P3\"\n").is_err());
        let err = HubConfig::from_toml(&BASE.replace("sqlite://data/hub.db", "mysql://x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("hub.database"), "{err}");
    }

    #[test]
    fn postgres_url_is_accepted_by_the_parser() {
        let c = HubConfig::from_toml(&BASE.replace("sqlite://data/hub.db", "postgres://u@h/db")).unwrap();
        assert!(matches!(c.database_url().unwrap(), DatabaseUrl::Postgres(_)));
    }

    #[test]
    fn duplicate_estate_is_rejected() {
        let err = with("[[estates]]\nid = \"estate-a\"\nname = \"again\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("estates[1].id"), "{err}");
    }
}
