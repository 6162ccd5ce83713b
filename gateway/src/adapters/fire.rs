//! What a fire panel can say, whatever protocol it says it in: the canonical fire event
//! kinds that the DC-09 (Contact ID, SIA DCS) tables and the Modbus zone maps translate to.
//!
//! Restores: a zone's return to normal (Contact ID qualifier 3, SIA `FH`/`FJ`/`FV`, a
//! Modbus zone bit clearing) is sent as the matching `*_RESTORE` type, which the hub applies
//! to that zone's alarm only; `RESET` is the panel-wide return to normal.

use gatehouse_proto as pb;

/// A canonical fire event kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FireKind {
    FireAlarm,
    PreAlarm,
    Fault,
    Supervisory,
    Disablement,
    Enablement,
    /// Panel-wide reset: the hub clears every latched alarm of the panel.
    Reset,
    Evacuate,
    Silence,
    FireAlarmRestore,
    PreAlarmRestore,
    FaultRestore,
    SupervisoryRestore,
}

impl FireKind {
    /// The `FireEvent.type` value on the wire.
    pub fn proto_type(self) -> i32 {
        use pb::FireEventType as T;
        match self {
            FireKind::FireAlarm => T::FireAlarm as i32,
            FireKind::PreAlarm => T::PreAlarm as i32,
            FireKind::Fault => T::Fault as i32,
            FireKind::Supervisory => T::Supervisory as i32,
            FireKind::Disablement => T::Disablement as i32,
            FireKind::Enablement => T::Enablement as i32,
            FireKind::Reset => T::Reset as i32,
            FireKind::Evacuate => T::Evacuate as i32,
            FireKind::Silence => T::Silence as i32,
            FireKind::FireAlarmRestore => T::FireAlarmRestore as i32,
            FireKind::PreAlarmRestore => T::PreAlarmRestore as i32,
            FireKind::FaultRestore => T::FaultRestore as i32,
            FireKind::SupervisoryRestore => T::SupervisoryRestore as i32,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FireKind::FireAlarm => "fire_alarm",
            FireKind::PreAlarm => "pre_alarm",
            FireKind::Fault => "fault",
            FireKind::Supervisory => "supervisory",
            FireKind::Disablement => "disablement",
            FireKind::Enablement => "enablement",
            FireKind::Reset => "reset",
            FireKind::Evacuate => "evacuate",
            FireKind::Silence => "silence",
            FireKind::FireAlarmRestore => "fire_alarm_restore",
            FireKind::PreAlarmRestore => "pre_alarm_restore",
            FireKind::FaultRestore => "fault_restore",
            FireKind::SupervisoryRestore => "supervisory_restore",
        }
    }
}

/// A translated fire event before it is stamped with the device's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FireSignal {
    /// `None`: the code was understood as a frame but is not one the tables map; it is
    /// still stored (type `UNSPECIFIED`, raw code kept) and raises nothing.
    pub kind: Option<FireKind>,
    pub zone: String,
    pub point: String,
    pub text: String,
    pub raw_code: String,
}

impl FireSignal {
    pub fn body(&self) -> pb::event::Body {
        pb::event::Body::Fire(pb::FireEvent {
            r#type: self
                .kind
                .map_or(pb::FireEventType::Unspecified as i32, FireKind::proto_type),
            r#loop: String::new(),
            zone: self.zone.clone(),
            point: self.point.clone(),
            text: self.text.clone(),
            raw_code: self.raw_code.clone(),
        })
    }
}

/// A zone or point number as panels print it, without leading zeros ("017" → "17",
/// "000" → "0"); anything that is not all digits is kept as it is.
pub fn number_label(digits: &str) -> String {
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let trimmed = digits.trim_start_matches('0');
        if trimmed.is_empty() { "0".into() } else { trimmed.into() }
    } else {
        digits.to_string()
    }
}
