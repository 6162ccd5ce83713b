//! The gateway configuration of a Modbus load run: one `kind = "modbus"` device per
//! simulated server, each with the whole point layout.

use std::{fmt::Write as _, net::SocketAddr, path::Path};

use super::{
    ESTATE, ModbusLoadOptions,
    points::{F32_DEADBAND, Kind, Table, layout, point_name},
};
use crate::harness::toml::toml_str;

/// The gateway configuration: one `kind = "modbus"` device per server.
pub(super) fn gateway_toml(
    opts: &ModbusLoadOptions,
    data_dir: &Path,
    hub: &str,
    http: SocketAddr,
    servers: &[SocketAddr],
) -> String {
    let mut s = format!(
        "[gateway]\nid = \"gw-{ESTATE}\"\nestate = \"{ESTATE}\"\ndata_dir = {}\nhubs = [{}]\nhttp_listen = \"{http}\"\n\n[uplink]\nplaintext = true\n\n[modbus]\nrefresh_s = {}\n",
        toml_str(&data_dir.display().to_string()),
        toml_str(hub),
        opts.refresh_s.max(1),
    );
    let layout = layout(opts.points);
    let mut points = String::new();
    for (i, p) in layout.iter().enumerate() {
        let (table, ty, extra) = match (p.table, p.kind) {
            (Table::Holding, Kind::U16) => ("holding", "u16", String::new()),
            (Table::Holding, Kind::F32) => ("holding", "f32", format!("deadband = {F32_DEADBAND}\n")),
            (Table::Input, Kind::U16) => ("input", "u16", String::new()),
            (Table::Input, Kind::F32) => ("input", "f32", format!("deadband = {F32_DEADBAND}\n")),
            (_, _) => ("discrete", "bool", String::new()),
        };
        let _ = write!(
            points,
            "[[devices.modbus.points]]\nname = \"{}\"\ntable = \"{table}\"\naddress = {}\ntype = \"{ty}\"\n{extra}",
            point_name(i, p),
            p.address
        );
    }
    for (d, addr) in servers.iter().enumerate() {
        let _ = write!(
            s,
            "\n[[devices]]\nid = \"plc-{d:04}\"\nkind = \"modbus\"\narea = \"plant\"\n[devices.modbus]\naddress = \"{addr}\"\nunit = 1\npoll_ms = {}\ntimeout_ms = {}\n{points}",
            opts.poll.as_millis().max(1),
            opts.timeout.as_millis().max(1)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn thirty_points_mix_types_and_tables_and_read_in_three_requests() {
        let l = layout(30);
        assert_eq!(l.len(), 30);
        let count = |t: Table, k: Kind| l.iter().filter(|p| p.table == t && p.kind == k).count();
        assert_eq!(count(Table::Holding, Kind::U16) + count(Table::Holding, Kind::F32), 15);
        assert_eq!(count(Table::Holding, Kind::F32), 5);
        assert_eq!(count(Table::Input, Kind::U16) + count(Table::Input, Kind::F32), 7);
        assert_eq!(count(Table::Discrete, Kind::Bit), 8);

        // The gateway's own planner merges each table into one read.
        let toml = gateway_toml(
            &ModbusLoadOptions {
                devices: 2,
                points: 30,
                poll: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                duration: Duration::from_secs(1),
                warmup: Duration::ZERO,
                change: 0.05,
                refresh_s: 60,
                data_dir: None,
                gateway_bin: None,
                hub_bin: None,
            },
            Path::new("/tmp/x"),
            "http://127.0.0.1:1",
            "127.0.0.1:2".parse().unwrap(),
            &["127.0.0.1:3".parse().unwrap(), "127.0.0.1:4".parse().unwrap()],
        );
        let config = gatehouse_gateway::config::Config::from_toml(&toml).expect("the generated config is valid");
        assert_eq!(config.devices.len(), 2);
        let points = &config.devices[0].modbus.as_ref().unwrap().points;
        assert_eq!(points.len(), 30);
        let plan = gatehouse_gateway::adapters::modbus::plan::plan(points, 0);
        assert_eq!(plan.len(), 3, "{plan:?}");
    }
}
