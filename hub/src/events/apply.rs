//! The events shell: what a stored event or a gateway's liveness means besides the rule
//! engine's alarm changes, inside the writer's transaction. A vehicle entering counts for
//! the registration KPI; gateway liveness becomes alarms: `gateway_silent` (no heartbeat:
//! one P4 alarm, its devices' state unknown, not one alarm per device) and
//! `gateway_stalled` (connected but making no progress), each cleared when the gateway is
//! heard from or progresses again. A raise goes on to the alarm book through the engine.
//!
//! Invariant: nothing here sleeps, sends, or writes outside the transaction it is given.

use std::collections::{HashMap, HashSet};

use gatehouse_proto::event::Body;
use tracing::{info, warn};

use crate::alarms::apply::{Followup, publish_alarm, publish_cleared, raised};
use crate::alarms::queries::{self as alarm_q, Cause};
use crate::alarms::rules::Activation;
use crate::alarms::{AlarmKey, Category, Priority, rfc3339};
use crate::store::{Conn, StoreError};
use crate::stream::Published;

use super::queries;

/// A vehicle entering counts for the registration KPI (no plate stored). Other events have
/// no consequence here.
pub async fn count_entry(conn: &mut Conn, event: &gatehouse_proto::Event, now: i64) -> Result<(), StoreError> {
    if let Some(Body::Vehicle(v)) = &event.body
        && v.direction() == gatehouse_proto::Direction::In
    {
        let registered = v.resident || !v.pass.trim().is_empty();
        let day = &rfc3339(now)[..10];
        queries::count_vehicle_entry(conn, &event.estate_id, day, registered).await?;
    }
    Ok(())
}

/// Which gateways were heard from when, and which have fallen silent.
#[derive(Debug)]
pub struct Liveness {
    /// Gateway → (estate, last heard).
    heard: HashMap<String, (String, i64)>,
    silent: HashSet<String>,
    silent_after_ms: i64,
}

impl Liveness {
    pub fn new(silent_after_ms: i64) -> Self {
        Liveness {
            heard: HashMap::new(),
            silent: HashSet::new(),
            silent_after_ms,
        }
    }

    /// A gateway said Hello: remember its estate, but a Hello alone does not count as being
    /// heard (a gateway reconnecting in a loop without delivering must still fall silent).
    pub fn hello(&mut self, gateway: &str, estate: &str, now: i64) {
        let at = self.heard.get(gateway).map_or(now, |(_, at)| *at);
        self.heard.insert(gateway.to_owned(), (estate.to_owned(), at));
    }

    /// A gateway was heard from (Hello, a batch, a heartbeat); a silent one is silent no
    /// more. `estate` may be omitted once the gateway's Hello has named it.
    pub async fn heard(
        &mut self,
        conn: &mut Conn,
        out: &mut Published,
        gateway: &str,
        estate: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let estate = match (estate, self.heard.get(gateway)) {
            (Some(e), _) => e.to_owned(),
            (None, Some((e, _))) => e.clone(),
            (None, None) => return Ok(()),
        };
        let estate = estate.as_str();
        self.heard.insert(gateway.to_owned(), (estate.to_owned(), now));
        if self.silent.remove(gateway) {
            let key = AlarmKey::new(estate, gateway, "gateway_silent");
            let cause = Cause {
                note: Some("gateway heard again"),
                ..Default::default()
            };
            if let Some(id) = alarm_q::clear(conn, &key, now, &cause).await? {
                publish_cleared(out, id, &key);
            }
            queries::set_devices_unknown(conn, gateway, false).await?;
            info!(gateway, "gateway heard again");
        }
        Ok(())
    }

    /// Gateways not heard from within the silence limit and not yet silent: (gateway, estate).
    pub fn fallen_silent(&self, now: i64) -> Vec<(String, String)> {
        self.heard
            .iter()
            .filter(|(g, (_, at))| *at <= now - self.silent_after_ms && !self.silent.contains(*g))
            .map(|(g, (e, _))| (g.clone(), e.clone()))
            .collect()
    }

    /// Inhibition: one P4 alarm for the gateway, and its devices' state unknown (not one
    /// alarm per device).
    pub async fn silent(
        &mut self,
        conn: &mut Conn,
        out: &mut Published,
        gateway: &str,
        estate: &str,
        now: i64,
    ) -> Result<Option<Followup>, StoreError> {
        self.silent.insert(gateway.to_owned());
        let a = Activation {
            key: AlarmKey::new(estate, gateway, "gateway_silent"),
            gateway: gateway.to_owned(),
            area: "gateway".into(),
            priority: Priority::P4,
            category: Category::Device,
            message: format!(
                "Gateway {gateway} silent: no heartbeat for {} s; its devices' state is unknown",
                self.silent_after_ms / 1000
            ),
            latched: false,
            value: None,
            repeat: false,
        };
        let cause = Cause {
            note: Some("missed heartbeats"),
            ..Default::default()
        };
        let (id, what) = alarm_q::activate(conn, &a, now, &cause).await?;
        let n = queries::set_devices_unknown(conn, gateway, true).await?;
        warn!(gateway, devices = n, "gateway silent: its devices' state is unknown");
        publish_alarm(out, id, what.as_str(), &a);
        Ok(raised(id, what))
    }
}

/// A connected gateway makes no progress (or its batch was refused): one P3 device alarm
/// `gateway_stalled`, beside `gateway_silent`; it clears when progress resumes.
pub async fn stalled(
    conn: &mut Conn,
    out: &mut Published,
    gateway: &str,
    estate: &str,
    message: &str,
    now: i64,
) -> Result<Option<Followup>, StoreError> {
    let a = Activation {
        key: AlarmKey::new(estate, gateway, "gateway_stalled"),
        gateway: gateway.to_owned(),
        area: "gateway".into(),
        priority: Priority::P3,
        category: Category::Device,
        message: message.to_owned(),
        latched: false,
        value: None,
        repeat: false,
    };
    let cause = Cause {
        note: Some("no progress"),
        ..Default::default()
    };
    let (id, what) = alarm_q::activate(conn, &a, now, &cause).await?;
    warn!(gateway, message, "gateway stalled");
    publish_alarm(out, id, what.as_str(), &a);
    Ok(raised(id, what))
}

/// The stalled gateway's stored sequence advanced again (or it has nothing pending).
pub async fn progressing(
    conn: &mut Conn,
    out: &mut Published,
    gateway: &str,
    estate: &str,
    now: i64,
) -> Result<(), StoreError> {
    let key = AlarmKey::new(estate, gateway, "gateway_stalled");
    let cause = Cause {
        note: Some("progress resumed"),
        ..Default::default()
    };
    if let Some(id) = alarm_q::clear(conn, &key, now, &cause).await? {
        publish_cleared(out, id, &key);
    }
    info!(gateway, "gateway progressing again");
    Ok(())
}
