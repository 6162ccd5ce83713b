//! End-to-end tests of Gatehouse live in `tests/tests/`; this crate has no code of its own.
