//! Gateway liveness as alarms: `gateway_silent` (no heartbeat: one P4 alarm, its devices'
//! state unknown, not one alarm per device) and `gateway_stalled` (connected but making no
//! progress), each cleared when the gateway is heard from or progresses again.

use serde_json::json;
use tracing::{info, warn};

use crate::alarms::queries::{self as alarm_q, Cause};
use crate::alarms::rules::Activation;
use crate::alarms::{AlarmKey, Category, HistoryChange, Priority};
use crate::events::queries as events;
use crate::store::{Conn, StoreError};

use super::Engine;

impl Engine {
    /// A gateway was heard from (Hello, a batch, a heartbeat).
    /// `estate` may be omitted once the gateway's Hello has named it.
    pub async fn heard(
        &mut self,
        conn: &mut Conn,
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
                self.out
                    .push("alarm", id, "cleared", json!({"estate": estate, "device": gateway}));
            }
            events::set_devices_unknown(conn, gateway, false).await?;
            info!(gateway, "gateway heard again");
        }
        Ok(())
    }

    /// A gateway said Hello: remember its estate, but a Hello alone does not count as being
    /// heard (a gateway reconnecting in a loop without delivering must still fall silent).
    pub fn hello(&mut self, gateway: &str, estate: &str, now: i64) {
        let at = self.heard.get(gateway).map_or(now, |(_, at)| *at);
        self.heard.insert(gateway.to_owned(), (estate.to_owned(), at));
    }

    /// A connected gateway makes no progress (or its batch was refused): one P3 device
    /// alarm `gateway_stalled`, beside `gateway_silent`; it clears when progress resumes.
    pub async fn gateway_stalled(
        &mut self,
        conn: &mut Conn,
        gateway: &str,
        estate: &str,
        message: &str,
        now: i64,
    ) -> Result<(), StoreError> {
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
        crate::alarms::apply::publish_alarm(&mut self.out, id, what.as_str(), &a);
        if matches!(what, HistoryChange::Raised | HistoryChange::Reraised) {
            self.on_raise(conn, id, now).await?;
        }
        Ok(())
    }

    /// The stalled gateway's stored sequence advanced again (or it has nothing pending).
    pub async fn gateway_progressing(
        &mut self,
        conn: &mut Conn,
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
            self.out
                .push("alarm", id, "cleared", json!({"estate": estate, "device": gateway}));
        }
        info!(gateway, "gateway progressing again");
        Ok(())
    }

    /// Inhibition: one P4 alarm for the gateway, and its devices' state unknown (not one
    /// alarm per device).
    pub(super) async fn gateway_silent(
        &mut self,
        conn: &mut Conn,
        gateway: &str,
        estate: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.silent.insert(gateway.to_owned());
        let a = Activation {
            key: AlarmKey::new(estate, gateway, "gateway_silent"),
            gateway: gateway.to_owned(),
            area: "gateway".into(),
            priority: Priority::P4,
            category: Category::Device,
            message: format!(
                "Gateway {gateway} silent: no heartbeat for {} s; its devices' state is unknown",
                self.cfg.gateway_silent_ms / 1000
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
        let n = events::set_devices_unknown(conn, gateway, true).await?;
        warn!(gateway, devices = n, "gateway silent: its devices' state is unknown");
        crate::alarms::apply::publish_alarm(&mut self.out, id, what.as_str(), &a);
        if matches!(what, HistoryChange::Raised | HistoryChange::Reraised) {
            self.on_raise(conn, id, now).await?;
        }
        Ok(())
    }
}
