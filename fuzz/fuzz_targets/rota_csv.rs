//! cargo-fuzz target: see `gatehouse_fuzz::rota_csv` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_fuzz::rota_csv(data));
