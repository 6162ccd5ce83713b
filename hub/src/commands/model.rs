//! Pure: which actions each device kind takes, the checks on a command's arguments, and the
//! states a command goes through. No I/O.

use std::collections::BTreeMap;

/// How long a gateway may take to carry a command out: the `deadline_ms` sent with it. The
/// gateway's MQTT adapter waits as long for a device's answer (docs/design.md, gRPC).
pub const DEADLINE_MS: i64 = 10_000;
/// After the deadline, how long the hub still waits for the gateway's result (it is sent at
/// the deadline at the latest, then travels) before the command is `timed_out`.
pub const RESULT_GRACE_MS: i64 = 5_000;

/// Most arguments a command may carry, and their sizes.
pub const MAX_ARGS: usize = 16;
const MAX_ARG_NAME: usize = 64;
const MAX_ARG_VALUE: usize = 256;

/// The actions each device kind (as its gateway announced it) can take, and why — from what
/// the gateway's adapters accept (docs/design.md, gRPC, "Commands"). Anything else is
/// refused at the hub before it is sent.
pub const ACTIONS: &[(&str, &[&str])] = &[
    // MQTT door controllers: the gateway passes any action to the device's command topic;
    // a door controller implements these (a barrier is a door: `release` lifts it).
    ("door", &["unlock", "lock", "release"]),
    // MQTT intercoms: releasing (or unlocking) the door of the call.
    ("intercom", &["release", "unlock"]),
    // Fire panels: a Modbus panel takes exactly `reset` and `silence` (register writes,
    // gateway/src/adapters/modbus_fire/shell.rs) and an MQTT panel is sent the same; a DC-09
    // panel refuses every command at its gateway (the protocol carries none), which the hub
    // cannot tell from the kind, so that refusal comes back as `failed` with its reason.
    ("fire_panel", &["reset", "silence"]),
    // Modbus devices (pump rooms, tanks): only `write` {point, value} of a writable point
    // (gateway/src/adapters/modbus/shell.rs); resetting a pump fault is such a write.
    ("modbus", &["write"]),
    // Gateways and devices of no known kind take no command.
];

/// Arguments an action cannot do without.
const REQUIRED_ARGS: &[(&str, &[&str])] = &[("write", &["point", "value"])];

/// Names an argument may not have: an MQTT command flattens its arguments into the object
/// that carries these.
const RESERVED_ARGS: &[&str] = &["command_id", "action"];

/// The actions a device kind takes (empty: none).
pub fn actions(kind: &str) -> &'static [&'static str] {
    ACTIONS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(&[], |(_, actions)| actions)
}

/// Why a command is refused before it is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("a {kind} device takes no command")]
    NoCommands { kind: String },
    #[error("a {kind} device cannot {action}; it takes: {allowed}")]
    Action {
        kind: String,
        action: String,
        allowed: String,
    },
    #[error("{action} needs the argument {name:?}")]
    MissingArg { action: String, name: &'static str },
    #[error("invalid argument {name:?}: {why}")]
    BadArg { name: String, why: String },
}

/// Checks that a device of `kind` can take `action` with `args`.
pub fn check(kind: &str, action: &str, args: &BTreeMap<String, String>) -> Result<(), Refusal> {
    let allowed = actions(kind);
    if allowed.is_empty() {
        return Err(Refusal::NoCommands { kind: kind.into() });
    }
    if !allowed.contains(&action) {
        return Err(Refusal::Action {
            kind: kind.into(),
            action: action.into(),
            allowed: allowed.join(", "),
        });
    }
    if args.len() > MAX_ARGS {
        return Err(Refusal::BadArg {
            name: String::new(),
            why: format!("at most {MAX_ARGS} arguments"),
        });
    }
    for (name, value) in args {
        let why = if RESERVED_ARGS.contains(&name.as_str()) {
            Some("a reserved name".to_owned())
        } else if name.is_empty() || name.len() > MAX_ARG_NAME || name.chars().any(char::is_control) {
            Some(format!("a name of 1 to {MAX_ARG_NAME} bytes, no control characters"))
        } else if value.len() > MAX_ARG_VALUE || value.chars().any(char::is_control) {
            Some(format!(
                "a value of at most {MAX_ARG_VALUE} bytes, no control characters"
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Refusal::BadArg {
                name: name.clone(),
                why,
            });
        }
    }
    for (a, names) in REQUIRED_ARGS {
        if *a == action
            && let Some(name) = names.iter().find(|n| !args.contains_key(**n))
        {
            return Err(Refusal::MissingArg {
                action: action.into(),
                name,
            });
        }
    }
    Ok(())
}

/// Where a command stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandState {
    /// Recorded and handed to the gateway's link; no result yet.
    Sent,
    Ok,
    /// The device or the gateway said no (the detail says why).
    Failed,
    /// No result by its deadline (and the grace after it).
    TimedOut,
    /// The gateway had no open stream: never sent.
    GatewayOffline,
}

impl CommandState {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Sent => "sent",
            CommandState::Ok => "ok",
            CommandState::Failed => "failed",
            CommandState::TimedOut => "timed_out",
            CommandState::GatewayOffline => "gateway_offline",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            CommandState::Sent,
            CommandState::Ok,
            CommandState::Failed,
            CommandState::TimedOut,
            CommandState::GatewayOffline,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// Whether a command in `from` may go to `to`. Only a sent command settles, once; a result
/// arriving after the hub gave up (`timed_out`) still says what the device did, so it is kept.
pub fn may_settle(from: CommandState, to: CommandState) -> bool {
    use CommandState::*;
    matches!(
        (from, to),
        (Sent, Ok | Failed | TimedOut | GatewayOffline) | (TimedOut, Ok | Failed)
    )
}

/// The wire's `command_id` of command `id`, and back.
pub fn wire_id(id: i64) -> String {
    format!("cmd-{id}")
}

pub fn parse_wire_id(s: &str) -> Option<i64> {
    s.strip_prefix("cmd-")?.parse().ok().filter(|id| *id > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn each_kind_takes_its_actions_only() {
        let none = BTreeMap::new();
        for (kind, action, ok) in [
            ("door", "unlock", true),
            ("door", "release", true),
            ("door", "reset", false),
            ("intercom", "release", true),
            ("fire_panel", "reset", true),
            ("fire_panel", "silence", true),
            ("fire_panel", "unlock", false),
            ("modbus", "reset", false),
            ("gateway", "unlock", false),
            ("unspecified", "unlock", false),
        ] {
            assert_eq!(check(kind, action, &none).is_ok(), ok, "{kind} {action}");
        }
    }

    #[test]
    fn write_needs_point_and_value() {
        assert_eq!(
            check("modbus", "write", &args(&[("point", "pump1_reset")])),
            Err(Refusal::MissingArg {
                action: "write".into(),
                name: "value"
            })
        );
        assert!(check("modbus", "write", &args(&[("point", "pump1_reset"), ("value", "1")])).is_ok());
    }

    #[test]
    fn reserved_and_oversized_arguments_are_refused() {
        assert!(check("door", "unlock", &args(&[("action", "lock")])).is_err());
        assert!(check("door", "unlock", &args(&[("door", &"x".repeat(300))])).is_err());
        assert!(check("door", "unlock", &args(&[("door", "D1")])).is_ok());
    }

    #[test]
    fn a_command_settles_once_and_a_late_result_is_kept() {
        use CommandState::*;
        assert!(may_settle(Sent, Ok));
        assert!(may_settle(TimedOut, Failed));
        assert!(!may_settle(Ok, Failed));
        assert!(!may_settle(GatewayOffline, Ok));
        assert!(!may_settle(TimedOut, TimedOut));
        for s in [Sent, Ok, Failed, TimedOut, GatewayOffline] {
            assert_eq!(CommandState::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn wire_ids_round_trip_and_foreign_ids_are_not_ours() {
        assert_eq!(parse_wire_id(&wire_id(42)), Some(42));
        assert_eq!(parse_wire_id("k1"), None);
        assert_eq!(parse_wire_id("cmd-0"), None);
    }
}
