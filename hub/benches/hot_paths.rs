//! Micro-benchmarks of the hub's hot paths: rule evaluation and event encode/decode.
//! `cargo bench -p gatehouse-hub --bench hot_paths`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse_hub::alarms::Priority;
use gatehouse_hub::alarms::rules::{PointRuleConfig, RuleState};
use gatehouse_proto as pb;
use prost::Message as _;

fn event(body: pb::event::Body) -> pb::Event {
    pb::Event {
        event_id: "0190f1c2-7a3b-7c4d-8e5f-001122334455".into(),
        seq: 1,
        gateway_id: "gw-estate-a".into(),
        estate_id: "estate-a".into(),
        device_id: "pump-room-1".into(),
        device_kind: pb::DeviceKind::Modbus as i32,
        area: "water-pump-room".into(),
        occurred_at_ms: 1_795_000_000_000,
        received_at_ms: 1_795_000_000_001,
        trace_context: Default::default(),
        body: Some(body),
    }
}

fn rule(point: &str, low: Option<f64>, when: Option<bool>) -> PointRuleConfig {
    PointRuleConfig {
        point: point.into(),
        device: None,
        estate: None,
        low,
        high: None,
        deadband: 0.02,
        delay_s: 0,
        when,
        priority: Priority::P3,
        message: None,
    }
}

fn rules(c: &mut Criterion) {
    let mut state = RuleState::new(vec![
        rule("outlet_pressure", Some(0.25), None),
        rule("pump1_fault", None, Some(true)),
        rule("pump2_fault", None, Some(true)),
    ]);
    let reading = event(pb::event::Body::Point(pb::PointReading {
        point: "outlet_pressure".into(),
        value: 0.41,
        unit: "MPa".into(),
        quality: pb::Quality::Good as i32,
        refresh: false,
    }));
    let access = event(pb::event::Body::Access(pb::AccessEvent {
        door: "main-gate-east".into(),
        result: pb::AccessResult::Granted as i32,
        credential: "card-0012345678".into(),
        reason: String::new(),
    }));
    let mut now = 1_795_000_000_000;
    c.bench_function("rules: point reading within limits", |b| {
        b.iter(|| {
            now += 1;
            state.evaluate(black_box(&reading), now)
        })
    });
    c.bench_function("rules: granted access (no alarm)", |b| {
        b.iter(|| {
            now += 1;
            state.evaluate(black_box(&access), now)
        })
    });
    let mut n = 0u64;
    c.bench_function("rules: forced door (new alarm each time)", |b| {
        b.iter(|| {
            n += 1;
            now += 1;
            let forced = event(pb::event::Body::Door(pb::DoorEvent {
                r#type: pb::DoorEventType::Forced as i32,
                door: format!("d{n}"),
                seconds: 0,
            }));
            state.evaluate(black_box(&forced), now)
        })
    });
}

fn encoding(c: &mut Criterion) {
    let mut e = event(pb::event::Body::Point(pb::PointReading {
        point: "outlet_pressure".into(),
        value: 0.41,
        unit: "MPa".into(),
        quality: pb::Quality::Good as i32,
        refresh: false,
    }));
    e.trace_context.insert(
        "traceparent".into(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
    );
    let bytes = e.encode_to_vec();
    let batch = pb::EventBatch {
        events: (0..500).map(|_| e.clone()).collect(),
    };
    let batch_bytes = batch.encode_to_vec();
    c.bench_function("event encode (with traceparent)", |b| {
        b.iter(|| black_box(&e).encode_to_vec())
    });
    c.bench_function("event decode (with traceparent)", |b| {
        b.iter(|| pb::Event::decode(black_box(bytes.as_slice())).unwrap())
    });
    c.bench_function("batch of 500 decode", |b| {
        b.iter(|| pb::EventBatch::decode(black_box(batch_bytes.as_slice())).unwrap())
    });
}

criterion_group!(benches, rules, encoding);
criterion_main!(benches);
