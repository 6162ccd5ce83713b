//! Topic rights, pure. An authenticated device publishes only under its own id — the
//! profile topics `gatehouse/v1/<id>/event`, `…/status`, `…/command/result`, and the vendor
//! topics configured for it (devices sharing one vendor topic are one controller's doors:
//! any of them may publish there for all) — and subscribes only to its own command topic
//! (`gatehouse/v1/<id>/command`, or a filter that can match nothing else under it, such as
//! `gatehouse/v1/<id>/command/#`). Nobody publishes on a command topic: only the gateway
//! sends there. An anonymous client (`mqtt.allow_anonymous`, loopback only) keeps every
//! right but that one.
//!
//! This holds because the gateway serves MQTT itself (`shell.rs`): every PUBLISH and
//! SUBSCRIBE of every connection passes `connection.rs`, which asks these functions before
//! anything else, and a publish is never forwarded to another client (the only messages a
//! client receives are the commands `intake.rs` sends on command topics).

use super::{codec, vendor::VendorRouter};

const PREFIX: &str = "gatehouse/v1/";

/// Who a connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Device(String),
    Anonymous,
}

impl Identity {
    pub fn device(&self) -> Option<&str> {
        match self {
            Identity::Device(d) => Some(d),
            Identity::Anonymous => None,
        }
    }
}

/// Why a publish or subscription was refused (counted on `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A publish on a command topic (only the gateway sends there).
    CommandTopic,
    /// A publish outside the device's own topics.
    NotOwnTopic,
}

/// Whether `topic` is a device's command topic `gatehouse/v1/<id>/command` (what the
/// gateway sends on).
pub fn is_command_topic(topic: &str) -> bool {
    let Some(rest) = topic.strip_prefix(PREFIX) else {
        return false;
    };
    let mut levels = rest.split('/');
    let _device = levels.next();
    levels.next() == Some("command") && levels.next().is_none()
}

/// May `who` publish on `topic`?
pub fn may_publish(who: &Identity, topic: &str, vendors: &VendorRouter) -> Result<(), Refusal> {
    if is_command_topic(topic) {
        return Err(Refusal::CommandTopic);
    }
    let Identity::Device(device) = who else {
        return Ok(());
    };
    if let Some(rest) = topic.strip_prefix(PREFIX) {
        return match rest.split_once('/') {
            Some((id, kind)) if id == device && matches!(kind, "event" | "status" | "command/result") => Ok(()),
            _ => Err(Refusal::NotOwnTopic),
        };
    }
    // The vendor topic entry the intake will route this publish by (the first that
    // matches) must be one the device is bound to.
    match vendors
        .topics
        .iter()
        .find(|(filter, _)| super::vendor::topic_matches(filter, topic))
    {
        Some((_, bindings)) if bindings.iter().any(|b| b.device_id == *device) => Ok(()),
        _ => Err(Refusal::NotOwnTopic),
    }
}

/// May `who` subscribe to `filter`? A device: only if every topic the filter matches under
/// `gatehouse/v1/` is its own command topic, or below it.
pub fn may_subscribe(who: &Identity, filter: &str) -> bool {
    let Identity::Device(device) = who else {
        return true;
    };
    let own = format!("{PREFIX}{device}/command");
    filter == own
        || filter
            .strip_prefix(own.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether a command on `topic` may go to a session of `who` subscribed with `filter`
/// (the delivery side of [`may_subscribe`], so a right checked once holds at delivery).
pub fn may_receive(who: &Identity, topic: &str, filter: &str) -> bool {
    codec::matches(topic, filter) && may_subscribe(who, filter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::mqtt::config::DeviceVendorConfig;

    fn door(id: &str) -> Identity {
        Identity::Device(id.into())
    }

    fn router() -> VendorRouter {
        let mapping: crate::adapters::mqtt::vendor::VendorMapping = toml::from_str(
            r#"
name = "acme"
[[rules]]
type = "door_forced"
[rules.when]
"#,
        )
        .expect("mapping");
        let shared = |id: &str| DeviceVendorConfig {
            mapping: "acme".into(),
            topic: "acme/+/events".into(),
            device_key: Some(id.into()),
        };
        let own = DeviceVendorConfig {
            mapping: "acme".into(),
            topic: "other/door-9".into(),
            device_key: None,
        };
        let (a, b) = (shared("door-1"), shared("door-2"));
        VendorRouter::new(vec![mapping], [("door-1", &a), ("door-2", &b), ("door-9", &own)])
    }

    #[test]
    fn a_device_publishes_only_under_its_own_id() {
        let v = VendorRouter::default();
        let a = door("door-a");
        for ok in [
            "gatehouse/v1/door-a/event",
            "gatehouse/v1/door-a/status",
            "gatehouse/v1/door-a/command/result",
        ] {
            assert_eq!(may_publish(&a, ok, &v), Ok(()), "{ok}");
        }
        for (no, why) in [
            ("gatehouse/v1/door-b/event", Refusal::NotOwnTopic),
            ("gatehouse/v1/door-a/other", Refusal::NotOwnTopic),
            ("gatehouse/v1/door-a", Refusal::NotOwnTopic),
            ("gatehouse/v1/door-a/event/x", Refusal::NotOwnTopic),
            ("gatehouse/v1/door-a/command", Refusal::CommandTopic),
            ("gatehouse/v1/door-b/command", Refusal::CommandTopic),
            ("elsewhere", Refusal::NotOwnTopic),
        ] {
            assert_eq!(may_publish(&a, no, &v), Err(why), "{no}");
        }
        assert_eq!(
            may_publish(&Identity::Anonymous, "gatehouse/v1/door-a/command", &v),
            Err(Refusal::CommandTopic),
            "nobody but the gateway publishes on a command topic"
        );
        assert_eq!(
            may_publish(&Identity::Anonymous, "gatehouse/v1/door-b/event", &v),
            Ok(())
        );
    }

    #[test]
    fn vendor_topics_belong_to_the_devices_bound_to_them() {
        let v = router();
        assert_eq!(may_publish(&door("door-1"), "acme/x/events", &v), Ok(()));
        assert_eq!(may_publish(&door("door-2"), "acme/x/events", &v), Ok(()));
        assert_eq!(
            may_publish(&door("door-9"), "acme/x/events", &v),
            Err(Refusal::NotOwnTopic)
        );
        assert_eq!(may_publish(&door("door-9"), "other/door-9", &v), Ok(()));
        assert_eq!(
            may_publish(&door("door-1"), "other/door-9", &v),
            Err(Refusal::NotOwnTopic)
        );
    }

    #[test]
    fn a_device_subscribes_only_to_its_own_command_topic() {
        let a = door("door-a");
        assert!(may_subscribe(&a, "gatehouse/v1/door-a/command"));
        assert!(may_subscribe(&a, "gatehouse/v1/door-a/command/#"));
        for no in [
            "#",
            "+/#",
            "gatehouse/#",
            "gatehouse/v1/+/command",
            "gatehouse/v1/door-a/#",
            "gatehouse/v1/door-a/+",
            "gatehouse/v1/door-ab/command",
            "gatehouse/v1/door-a/commands",
            "gatehouse/v1/door-b/command",
        ] {
            assert!(!may_subscribe(&a, no), "{no}");
        }
        assert!(may_subscribe(&Identity::Anonymous, "#"));
        assert!(may_receive(
            &a,
            "gatehouse/v1/door-a/command",
            "gatehouse/v1/door-a/command"
        ));
        assert!(!may_receive(&a, "gatehouse/v1/door-b/command", "#"));
        assert!(is_command_topic("gatehouse/v1/x/command"));
        assert!(!is_command_topic("gatehouse/v1/x/command/result"));
    }
}
