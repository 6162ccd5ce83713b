//! cargo-fuzz target: see `gatehouse_fuzz::proto_uplink` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_fuzz::proto_uplink(data));
