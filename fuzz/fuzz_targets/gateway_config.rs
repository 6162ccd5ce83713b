//! cargo-fuzz target: see `gatehouse_fuzz::gateway_config` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_fuzz::gateway_config(data));
