//! The cargo-fuzz targets' bodies (`fuzz/src/lib.rs`), compiled and run on stable: on the
//! seeds kept in `fuzz/corpus/` and on arbitrary bytes. So the targets build wherever the
//! workspace builds, and nightly is only needed for long fuzzing sessions.

#[path = "../../fuzz/src/lib.rs"]
mod targets;

use std::path::Path;

use proptest::prelude::*;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 10] = [
    ("dc09_frame", targets::dc09_frame),
    ("dc09_data", targets::dc09_data),
    ("mqtt_payload", targets::mqtt_payload),
    ("vendor_mapping", targets::vendor_mapping),
    ("modbus_decode", targets::modbus_decode),
    ("proto_uplink", targets::proto_uplink),
    ("proto_downlink", targets::proto_downlink),
    ("gateway_config", targets::gateway_config),
    ("hub_config", targets::hub_config),
    ("rota_csv", targets::rota_csv),
];

#[test]
fn every_target_passes_its_seeds() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut seeds = 0;
    for (name, target) in TARGETS {
        let Ok(entries) = std::fs::read_dir(corpus.join(name)) else {
            continue;
        };
        for entry in entries.flatten() {
            let bytes = std::fs::read(entry.path()).expect("readable seed");
            target(&bytes);
            seeds += 1;
        }
    }
    assert!(
        seeds >= TARGETS.len(),
        "the corpus holds a seed per target ({seeds} found)"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_target_takes_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        for (_, target) in TARGETS {
            target(&bytes);
        }
    }
}
