//! The example configurations in `deploy/` load: they are what a newcomer copies.

use std::path::Path;

#[test]
fn every_example_configuration_in_deploy_loads() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut checked = 0;
    for entry in std::fs::read_dir(&deploy).expect("deploy/ exists") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if name.starts_with("hub") && name.ends_with(".toml") {
            gatehouse_hub::HubConfig::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            checked += 1;
        } else if name.starts_with("gateway") && name.ends_with(".toml") {
            gatehouse_gateway::config::Config::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            checked += 1;
        }
    }
    assert!(checked >= 2, "found {checked} example configurations");
}
