//! The board's browser harness: chromedriver and Chromium (`browser`), a relay the tests can
//! cut (`proxy`), the system under test (`system`) and synthetic gateways for load figures
//! (`gateways`), and the load figures (`figures`).

pub mod browser;
pub mod figures;
pub mod gateways;
pub mod proxy;
pub mod system;
