//! Which events a full outbox may drop, and in which order. Pure: the append applies it.
//! Readings go first, then other information; fire and door events, emergency calls and
//! denied access are never shed.

use gatehouse_proto as pb;

/// How readily an event may be shed from a full outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ShedClass {
    Never = 0,
    Information = 1,
    Reading = 2,
}

pub fn shed_class(event: &pb::Event) -> ShedClass {
    use pb::event::Body;
    match &event.body {
        Some(Body::Point(_)) => ShedClass::Reading,
        Some(Body::Fire(_) | Body::Door(_)) => ShedClass::Never,
        Some(Body::Intercom(i)) if i.r#type == pb::IntercomEventType::EmergencyCall as i32 => ShedClass::Never,
        Some(Body::Access(a)) if a.result == pb::AccessResult::Denied as i32 => ShedClass::Never,
        _ => ShedClass::Information,
    }
}
