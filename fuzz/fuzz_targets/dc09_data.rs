//! cargo-fuzz target: see `gatehouse_fuzz::dc09_data` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_fuzz::dc09_data(data));
