//! The board's browser harness: chromedriver and Chromium (`browser`), a relay the tests can
//! cut (`proxy`), the system under test (`system`) and synthetic gateways for load figures
//! (`gateways`).

pub mod browser;
pub mod gateways;
pub mod proxy;
pub mod system;
