//! Micro-benchmarks of the gateway's hot paths: MQTT payload translation, Modbus decoding,
//! event encode/decode, outbox append. `cargo bench -p gatehouse-gateway --bench hot_paths`.

use std::{hint::black_box, sync::Arc};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use gatehouse_gateway::{
    adapters::{
        modbus::{
            config::{Order, PointConfig, Table, ValueType},
            decode,
        },
        mqtt::translate,
    },
    metrics::Metrics,
    outbox::Outbox,
    registry::{DeviceInfo, DeviceKind},
};
use gatehouse_proto as pb;
use prost::Message as _;

fn door() -> DeviceInfo {
    DeviceInfo {
        id: "door-main-gate".into(),
        kind: DeviceKind::Door,
        area: "main-gate".into(),
    }
}

fn event(seq: u64) -> pb::Event {
    pb::Event {
        event_id: "0190f1c2-7a3b-7c4d-8e5f-001122334455".into(),
        seq,
        gateway_id: "gw-estate-a".into(),
        estate_id: "estate-a".into(),
        device_id: "door-main-gate".into(),
        device_kind: pb::DeviceKind::Door as i32,
        area: "main-gate".into(),
        occurred_at_ms: 1_795_000_000_000,
        received_at_ms: 1_795_000_000_001,
        trace_context: Default::default(),
        body: Some(pb::event::Body::Access(pb::AccessEvent {
            door: "main-gate-east".into(),
            result: pb::AccessResult::Granted as i32,
            credential: "card-0012345678".into(),
            reason: String::new(),
        })),
    }
}

fn translation(c: &mut Criterion) {
    let device = door();
    let access = br#"{"type":"access","door":"main-gate-east","result":"granted","credential":"card-0012345678","ts":"2026-11-26T02:47:00.123456+08:00"}"#;
    let forced = br#"{"type":"door_forced","door":"main-gate-east"}"#;
    c.bench_function("mqtt translate access (with ts)", |b| {
        b.iter(|| translate::translate_event(&device, black_box(access), 1_795_000_000_000, 16_384).unwrap())
    });
    c.bench_function("mqtt translate door_forced", |b| {
        b.iter(|| translate::translate_event(&device, black_box(forced), 1_795_000_000_000, 16_384).unwrap())
    });
}

fn modbus(c: &mut Criterion) {
    let point = |value_type, word_order| PointConfig {
        name: "outlet_pressure".into(),
        table: Table::Holding,
        address: 0,
        value_type,
        word_order,
        byte_order: Order::Big,
        bit: None,
        scale: 0.01,
        offset: 0.0,
        unit: "MPa".into(),
        deadband: 0.0,
        writable: false,
    };
    let f32_little = point(ValueType::F32, Order::Little);
    let u16_point = point(ValueType::U16, Order::Big);
    let words = [0x0000u16, 0x4120, 0x1234, 0x5678];
    c.bench_function("modbus decode f32 (word-swapped)", |b| {
        b.iter(|| decode::decode(black_box(&words[..2]), &f32_little).unwrap())
    });
    c.bench_function("modbus decode u16 scaled", |b| {
        b.iter(|| decode::decode(black_box(&words[..1]), &u16_point).unwrap())
    });
    // 30 points of one device (the Modbus load of issue 5: 500 devices × 30 points at 1 Hz).
    let block: Vec<u16> = (0..60).collect();
    c.bench_function("modbus decode 30 f32 points", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            for i in 0..30 {
                sum += decode::decode(black_box(&block[i * 2..i * 2 + 2]), &f32_little).unwrap();
            }
            sum
        })
    });
}

fn encoding(c: &mut Criterion) {
    let e = event(42);
    let bytes = e.encode_to_vec();
    c.bench_function("event encode", |b| b.iter(|| black_box(&e).encode_to_vec()));
    c.bench_function("event decode", |b| {
        b.iter(|| pb::Event::decode(black_box(bytes.as_slice())).unwrap())
    });
}

fn outbox(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outbox = rt
        .block_on(Outbox::open(
            &dir.path().join("outbox.db"),
            10_000_000,
            Arc::new(Metrics::default()),
        ))
        .unwrap();
    let mut group = c.benchmark_group("outbox append (one SQLite transaction)");
    for n in [1usize, 100, 500] {
        group.throughput(criterion::Throughput::Elements(n as u64));
        group.bench_function(format!("{n} events"), |b| {
            b.iter_batched(
                || (0..n).map(|_| event(0)).collect::<Vec<_>>(),
                |events| rt.block_on(outbox.append(&events)).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, translation, modbus, encoding, outbox);
criterion_main!(benches);
