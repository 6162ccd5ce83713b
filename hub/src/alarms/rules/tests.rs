//! Table tests of the rule engine: limit rules (deadband, on-delay), state rules, reading
//! quality, device-specific rules, latched alarms, fire zones and resets, a restart.

use super::*;
use gatehouse_proto::{DeviceStatus, DoorEvent, FireEvent, IntercomEvent, PointReading, VehicleEvent};

fn ev(device: &str, body: Body) -> Event {
    Event {
        seq: 1,
        gateway_id: "gw-1".into(),
        estate_id: "estate-a".into(),
        device_id: device.into(),
        area: "pump room".into(),
        body: Some(body),
        ..Default::default()
    }
}

fn point(name: &str, value: f64) -> Event {
    point_q(name, value, Quality::Good)
}

fn point_q(name: &str, value: f64, quality: Quality) -> Event {
    ev(
        "plc-1",
        Body::Point(PointReading {
            point: name.into(),
            value,
            quality: quality as i32,
            ..Default::default()
        }),
    )
}

fn fire(t: FireEventType, zone: &str) -> Event {
    ev(
        "panel-1",
        Body::Fire(FireEvent {
            r#type: t as i32,
            zone: zone.into(),
            ..Default::default()
        }),
    )
}

fn door(t: DoorEventType, door: &str) -> Event {
    ev(
        "door-1",
        Body::Door(DoorEvent {
            r#type: t as i32,
            door: door.into(),
            seconds: 0,
        }),
    )
}

fn status(device: &str, online: bool) -> Event {
    ev(
        device,
        Body::Status(DeviceStatus {
            online,
            reason: String::new(),
        }),
    )
}

fn limit_rule(low: Option<f64>, high: Option<f64>, deadband: f64, delay_s: u32) -> PointRuleConfig {
    PointRuleConfig {
        point: "pressure".into(),
        device: None,
        estate: None,
        low,
        high,
        deadband,
        delay_s,
        when: None,
        priority: Priority::P3,
        message: None,
    }
}

fn state_rule(when: bool, priority: Priority) -> PointRuleConfig {
    PointRuleConfig {
        point: "pump1_fault".into(),
        when: Some(when),
        priority,
        ..limit_rule(None, None, 0.0, 0)
    }
}

/// What a change does, in words, for compact tables: "+cond", "~cond" (repeat),
/// "=cond" (value), "-cond", "ack cond".
fn summary(changes: &[AlarmChange]) -> Vec<String> {
    changes
        .iter()
        .map(|c| match c {
            AlarmChange::Activate(a) if a.repeat => format!("~{}", a.key.condition),
            AlarmChange::Activate(a) => format!("+{}", a.key.condition),
            AlarmChange::Value { key, value } => format!("={}={value}", key.condition),
            AlarmChange::Clear { key, .. } => format!("-{}", key.condition),
            AlarmChange::Acknowledge { key, .. } => format!("ack {}", key.condition),
        })
        .collect()
}

/// Runs (time_ms, event or tick) steps and checks the summary of each step.
fn run(state: &mut RuleState, steps: &[(i64, Option<Event>, &[&str])]) {
    for (i, (t, event, expected)) in steps.iter().enumerate() {
        let changes = match event {
            Some(e) => state.evaluate(e, *t),
            None => state.tick(*t),
        };
        assert_eq!(summary(&changes), *expected, "step {i} at t={t}");
    }
}

#[test]
fn low_limit_with_deadband_raises_below_and_clears_only_past_the_deadband() {
    let mut s = RuleState::new(vec![limit_rule(Some(0.25), None, 0.02, 0)]);
    run(
        &mut s,
        &[
            (0, Some(point("pressure", 0.30)), &[]),
            (1, Some(point("pressure", 0.20)), &["+point:pressure:low"]),
            (2, Some(point("pressure", 0.26)), &["=point:pressure:low=0.26"]),
            (3, Some(point("pressure", 0.26)), &[]),
            (4, Some(point("pressure", 0.27)), &["-point:pressure:low"]),
            (5, Some(point("pressure", 0.20)), &["+point:pressure:low"]),
        ],
    );
}

#[test]
fn high_limit_with_deadband_raises_above_and_clears_below_high_minus_deadband() {
    let mut s = RuleState::new(vec![limit_rule(None, Some(10.0), 1.0, 0)]);
    run(
        &mut s,
        &[
            (0, Some(point("pressure", 10.0)), &[]),
            (1, Some(point("pressure", 10.5)), &["+point:pressure:high"]),
            (2, Some(point("pressure", 9.5)), &["=point:pressure:high=9.5"]),
            (3, Some(point("pressure", 9.0)), &["-point:pressure:high"]),
        ],
    );
}

#[test]
fn on_delay_activates_only_after_the_condition_held_for_the_delay() {
    let mut s = RuleState::new(vec![limit_rule(Some(0.25), None, 0.0, 5)]);
    run(
        &mut s,
        &[
            (0, Some(point("pressure", 0.2)), &[]),
            (1_000, None, &[]),
            (3_000, Some(point("pressure", 0.1)), &[]),
            (4_999, None, &[]),
            (5_000, None, &["+point:pressure:low"]),
            (6_000, None, &[]),
        ],
    );
    assert_eq!(s.pending_count(), 0);
}

#[test]
fn on_delay_is_cancelled_when_the_condition_goes_away_before_the_delay() {
    let mut s = RuleState::new(vec![limit_rule(Some(0.25), None, 0.0, 5)]);
    run(
        &mut s,
        &[
            (0, Some(point("pressure", 0.2)), &[]),
            (2_000, Some(point("pressure", 0.3)), &[]),
            (6_000, None, &[]),
            (7_000, Some(point("pressure", 0.2)), &[]),
            (11_000, None, &[]),
            (12_000, Some(point("pressure", 0.2)), &["+point:pressure:low"]),
        ],
    );
}

#[test]
fn state_rule_raises_while_true_and_clears_when_false() {
    let mut s = RuleState::new(vec![state_rule(true, Priority::P3)]);
    let e = point("pump1_fault", 1.0);
    let changes = s.evaluate(&e, 0);
    assert_eq!(summary(&changes), ["+point:pump1_fault:state"]);
    let AlarmChange::Activate(a) = &changes[0] else {
        panic!("expected an activation")
    };
    assert_eq!(
        (a.priority, a.category, a.latched),
        (Priority::P3, Category::Plant, false)
    );
    run(
        &mut s,
        &[
            (1, Some(point("pump1_fault", 1.0)), &[]),
            (2, Some(point("pump1_fault", 0.0)), &["-point:pump1_fault:state"]),
            (3, Some(point("pump1_fault", 0.0)), &[]),
        ],
    );
}

#[test]
fn p1_point_rule_is_category_fire() {
    let mut s = RuleState::new(vec![state_rule(false, Priority::P1)]);
    let changes = s.evaluate(&point("pump1_fault", 0.0), 0);
    let [AlarmChange::Activate(a)] = changes.as_slice() else {
        panic!("expected one activation, got {changes:?}")
    };
    assert_eq!(a.category, Category::Fire);
}

#[test]
fn bad_or_uncertain_quality_readings_change_nothing() {
    let mut s = RuleState::new(vec![limit_rule(Some(0.25), None, 0.0, 0)]);
    run(
        &mut s,
        &[
            (0, Some(point_q("pressure", 0.1, Quality::Bad)), &[]),
            (1, Some(point_q("pressure", 0.1, Quality::Uncertain)), &[]),
            (2, Some(point("pressure", f64::NAN)), &[]),
            (3, Some(point("pressure", 0.1)), &["+point:pressure:low"]),
            (4, Some(point_q("pressure", 0.9, Quality::Bad)), &[]),
            (
                5,
                Some(point_q("pressure", 0.9, Quality::Unspecified)),
                &["-point:pressure:low"],
            ),
        ],
    );
}

#[test]
fn device_specific_rule_overrides_the_general_one_for_that_device() {
    let general = limit_rule(Some(0.25), None, 0.0, 0);
    let specific = PointRuleConfig {
        device: Some("plc-1".into()),
        low: Some(0.1),
        ..limit_rule(None, None, 0.0, 0)
    };
    let mut s = RuleState::new(vec![general, specific]);
    run(
        &mut s,
        &[
            (0, Some(point("pressure", 0.2)), &[]),
            (1, Some(point("pressure", 0.05)), &["+point:pressure:low"]),
        ],
    );
    let mut other = point("pressure", 0.2);
    other.device_id = "plc-2".into();
    assert_eq!(summary(&s.evaluate(&other, 2)), ["+point:pressure:low"]);
}

#[test]
fn latched_door_alarm_repeats_as_update_and_clears_on_acknowledgement() {
    let mut s = RuleState::default();
    let changes = s.evaluate(&door(DoorEventType::Forced, "D1"), 0);
    let [AlarmChange::Activate(a)] = changes.as_slice() else {
        panic!("expected one activation, got {changes:?}")
    };
    assert_eq!(
        (a.priority, a.category, a.latched),
        (Priority::P2, Category::Security, true)
    );
    run(
        &mut s,
        &[
            (1, Some(door(DoorEventType::Forced, "D1")), &["~door_forced:D1"]),
            (2, Some(door(DoorEventType::HeldOpen, "D1")), &["+door_held_open:D1"]),
            (3, Some(door(DoorEventType::Tamper, "")), &["+tamper"]),
        ],
    );
    let key = AlarmKey::new("estate-a", "door-1", "door_forced:D1");
    let changes = s.acknowledge(&key, true, "alice", None);
    assert_eq!(summary(&changes), ["ack door_forced:D1", "-door_forced:D1"]);
    assert!(!s.is_active(&key));
    // Re-activation after the clear is a new raise (the writer re-arms acknowledged).
    run(
        &mut s,
        &[(4, Some(door(DoorEventType::Forced, "D1")), &["+door_forced:D1"])],
    );
}

#[test]
fn acknowledging_a_non_latched_alarm_leaves_it_active() {
    let mut s = RuleState::default();
    s.evaluate(&fire(FireEventType::FireAlarm, "3"), 0);
    let key = AlarmKey::new("estate-a", "panel-1", "fire_alarm:3");
    assert_eq!(summary(&s.acknowledge(&key, false, "bob", None)), ["ack fire_alarm:3"]);
    assert!(s.is_active(&key));
}

#[test]
fn a_zone_restore_clears_that_zone_and_condition_only() {
    let mut s = RuleState::default();
    run(
        &mut s,
        &[
            (0, Some(fire(FireEventType::FireAlarm, "17")), &["+fire_alarm:17"]),
            (1, Some(fire(FireEventType::FireAlarm, "3")), &["+fire_alarm:3"]),
            (2, Some(fire(FireEventType::Fault, "17")), &["+fire_fault:17"]),
            (3, Some(fire(FireEventType::Evacuate, "")), &["+evacuate"]),
            (
                4,
                Some(fire(FireEventType::FireAlarmRestore, "17")),
                &["-fire_alarm:17"],
            ),
            // Restoring what is not active changes nothing.
            (5, Some(fire(FireEventType::FireAlarmRestore, "17")), &[]),
            (6, Some(fire(FireEventType::PreAlarmRestore, "3")), &[]),
            (7, Some(fire(FireEventType::FaultRestore, "17")), &["-fire_fault:17"]),
        ],
    );
    assert!(s.is_active(&AlarmKey::new("estate-a", "panel-1", "fire_alarm:3")));
    assert!(s.is_active(&AlarmKey::new("estate-a", "panel-1", "evacuate")));
}

#[test]
fn fire_events_map_to_priorities_and_reset_clears_the_panel_latched_ones() {
    let mut s = RuleState::default();
    run(
        &mut s,
        &[
            (0, Some(fire(FireEventType::FireAlarm, "3")), &["+fire_alarm:3"]),
            (1, Some(fire(FireEventType::PreAlarm, "4")), &["+pre_alarm:4"]),
            (2, Some(fire(FireEventType::Evacuate, "")), &["+evacuate"]),
            (3, Some(fire(FireEventType::Fault, "5")), &["+fire_fault:5"]),
            (4, Some(fire(FireEventType::Supervisory, "6")), &["+supervisory:6"]),
            (5, Some(fire(FireEventType::Disablement, "7")), &["+zone_disabled:7"]),
            (6, Some(fire(FireEventType::Silence, "3")), &[]),
            (
                7,
                Some(fire(FireEventType::Reset, "")),
                &[
                    "-evacuate",
                    "-fire_alarm:3",
                    "-fire_fault:5",
                    "-pre_alarm:4",
                    "-supervisory:6",
                ],
            ),
            (8, Some(fire(FireEventType::Enablement, "7")), &["-zone_disabled:7"]),
            (9, Some(fire(FireEventType::Enablement, "7")), &[]),
        ],
    );
    let changes = s.evaluate(&fire(FireEventType::Fault, "1"), 10);
    let [AlarmChange::Activate(a)] = changes.as_slice() else {
        panic!("expected one activation, got {changes:?}")
    };
    assert_eq!((a.priority, a.category), (Priority::P3, Category::Fire));
}

#[test]
fn reset_of_one_panel_leaves_another_panels_alarms_active() {
    let mut s = RuleState::default();
    s.evaluate(&fire(FireEventType::FireAlarm, "1"), 0);
    let mut other = fire(FireEventType::FireAlarm, "1");
    other.device_id = "panel-2".into();
    s.evaluate(&other, 0);
    assert_eq!(
        summary(&s.evaluate(&fire(FireEventType::Reset, ""), 1)),
        ["-fire_alarm:1"]
    );
    assert_eq!(s.active_count(), 1);
}

#[test]
fn offline_raises_p4_once_and_online_clears_it() {
    let mut s = RuleState::default();
    run(
        &mut s,
        &[
            (0, Some(status("cam-1", true)), &[]),
            (1, Some(status("cam-1", false)), &["+offline"]),
            (2, Some(status("cam-1", false)), &[]),
            (3, Some(status("cam-1", true)), &["-offline"]),
            (4, Some(status("cam-1", false)), &["+offline"]),
        ],
    );
}

#[test]
fn emergency_call_is_a_latched_p2_alarm_and_other_events_raise_nothing() {
    let mut s = RuleState::default();
    let call = ev(
        "intercom-1",
        Body::Intercom(IntercomEvent {
            r#type: IntercomEventType::EmergencyCall as i32,
            from: "3-1201".into(),
            ..Default::default()
        }),
    );
    assert_eq!(summary(&s.evaluate(&call, 0)), ["+emergency_call:3-1201"]);
    let plain = ev(
        "intercom-1",
        Body::Intercom(IntercomEvent {
            r#type: IntercomEventType::CallStarted as i32,
            ..Default::default()
        }),
    );
    let vehicle = ev("barrier-1", Body::Vehicle(VehicleEvent::default()));
    let mut nobody = point("pressure", 0.0);
    nobody.body = None;
    for e in [plain, vehicle, nobody] {
        assert!(s.evaluate(&e, 1).is_empty());
    }
}

#[test]
fn unregistered_vehicle_entering_raises_latched_p4_without_the_plate() {
    use gatehouse_proto::Direction;
    let mut s = RuleState::default();
    let v = |direction: Direction, resident: bool, pass: &str| {
        ev(
            "barrier-1",
            Body::Vehicle(VehicleEvent {
                lane: "L1".into(),
                plate: "沪A12345".into(),
                direction: direction as i32,
                resident,
                pass: pass.into(),
            }),
        )
    };
    assert!(s.evaluate(&v(Direction::In, true, ""), 0).is_empty());
    assert!(s.evaluate(&v(Direction::In, false, "V-17"), 0).is_empty());
    assert!(s.evaluate(&v(Direction::Out, false, ""), 0).is_empty());
    let changes = s.evaluate(&v(Direction::In, false, ""), 0);
    let [AlarmChange::Activate(a)] = changes.as_slice() else {
        panic!("expected one activation, got {changes:?}")
    };
    assert_eq!((a.priority, a.latched), (Priority::P4, true));
    assert_eq!(a.key.condition, "vehicle_unregistered:L1");
    assert!(!a.message.contains("12345"));
}

#[test]
fn restored_active_alarm_is_cleared_by_its_normal_event_after_restart() {
    let mut s = RuleState::default();
    s.restore_active(
        AlarmKey::new("estate-a", "cam-1", "offline"),
        ActiveAlarm {
            latched: false,
            value: None,
        },
    );
    assert_eq!(summary(&s.evaluate(&status("cam-1", true), 0)), ["-offline"]);
}
