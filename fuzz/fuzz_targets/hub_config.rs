//! cargo-fuzz target: see `gatehouse_fuzz::hub_config` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_fuzz::hub_config(data));
