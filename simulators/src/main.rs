//! `gatehouse-sim`: the demo, a load run, and single device simulators to point at a real
//! gateway.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use gatehouse_sim::{
    bench,
    cli::parse_duration,
    demo,
    devices::{DoorController, FirePanel, Intercom},
    firepanel, load, modbus_load,
    mqtt_device::MqttDevice,
    pumproom::PumpRoom,
};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "gatehouse-sim", version, about = "Gatehouse device simulators and demo")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

/// `--operator` of the demo.
#[derive(Clone, Copy, clap::ValueEnum)]
enum DemoOperatorArg {
    Script,
    Board,
}

#[derive(Subcommand)]
enum Command {
    /// One hub and three estates with simulated devices and a storyline.
    Demo {
        /// Where the hub serves its HTTP API.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http_addr: SocketAddr,
        /// Where the hub's database and the gateways' outboxes live.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Stop after this long (e.g. 90s, 5m); without it, runs until Ctrl-C.
        #[arg(long = "for", value_parser = parse_duration)]
        run_for: Option<Duration>,
        /// Who handles the storyline: `script` (a scripted operator, unattended) or `board`
        /// (you, at the board the demo prints; the devices wait for your decisions).
        #[arg(long, value_enum, default_value = "script")]
        operator: DemoOperatorArg,
    },
    /// A load run against a hub (a `gatehouse-hub` child process, or `--hub`): `--via mqtt`,
    /// one gateway process per estate with MQTT devices publishing at a fixed total rate;
    /// `--via grpc`, one synthetic gateway stream per estate. Prints throughput, loss, ack
    /// and alarm-visible latency, CPU and memory figures.
    Load(load::cli::LoadArgs),
    /// Baselines in one run: raw tonic streaming (no persistence), batched SQLite inserts,
    /// the hub's real ingest (and its share of the lower limit); MQTT through the embedded
    /// rumqttd and through Mosquitto on 127.0.0.1:1883 when one answers there.
    Bench(bench::cli::BenchArgs),
    /// One `gatehouse-gateway` process polling N simulated Modbus TCP servers (in this
    /// process) × P points, forwarding to a `gatehouse-hub` child: prints the gateway's CPU
    /// over a steady-state window (% of one core), memory, Modbus requests/s, events/s and
    /// failures.
    ModbusLoad(modbus_load::cli::ModbusLoadArgs),
    /// A door controller with background traffic, connected to a gateway's broker.
    Door {
        #[arg(long)]
        broker: SocketAddr,
        #[arg(long)]
        id: String,
        /// The device's MQTT password (username = `--id`); omit only for a gateway with
        /// `mqtt.allow_anonymous`.
        #[arg(long)]
        password: Option<String>,
        /// Events per minute.
        #[arg(long, default_value_t = 30)]
        rate: u32,
    },
    /// An intercom placing calls, connected to a gateway's broker.
    Intercom {
        #[arg(long)]
        broker: SocketAddr,
        #[arg(long)]
        id: String,
        /// The device's MQTT password (username = `--id`); omit only for a gateway with
        /// `mqtt.allow_anonymous`.
        #[arg(long)]
        password: Option<String>,
        #[arg(long, default_value_t = 6)]
        rate: u32,
    },
    /// A fire panel that raises one alarm in `zone` after `after` seconds.
    FirePanel {
        #[arg(long)]
        broker: SocketAddr,
        #[arg(long)]
        id: String,
        /// The device's MQTT password (username = `--id`); omit only for a gateway with
        /// `mqtt.allow_anonymous`.
        #[arg(long)]
        password: Option<String>,
        #[arg(long, default_value = "1")]
        zone: String,
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        after: Duration,
    },
    /// A fire panel's DC-09 dialler: NULL polls, and a fire alarm (then its restore) in a zone.
    FirePanelDc09 {
        /// The gateway's `[dc09] listen` address.
        #[arg(long, default_value = "127.0.0.1:17000")]
        receiver: SocketAddr,
        #[arg(long, default_value = "1234")]
        account: String,
        /// AES key as 16/24/32 characters of text (encrypted frames).
        #[arg(long, conflicts_with = "key_hex")]
        key: Option<String>,
        /// AES key as 32/48/64 hex digits.
        #[arg(long)]
        key_hex: Option<String>,
        /// Send over UDP (default TCP).
        #[arg(long)]
        udp: bool,
        /// Speak SIA DCS (default Contact ID).
        #[arg(long)]
        sia: bool,
        #[arg(long, default_value = "17")]
        zone: u16,
        /// Raise the fire alarm after this long…
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        after: Duration,
        /// …and restore it this long after that (never, if absent).
        #[arg(long, value_parser = parse_duration)]
        restore_after: Option<Duration>,
        /// NULL poll interval.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        poll: Duration,
    },
    /// A fire panel's Modbus gateway module (zone status words, reset/silence registers).
    FirePanelModbus {
        #[arg(long, default_value = "127.0.0.1:15021")]
        listen: SocketAddr,
        #[arg(long, default_value = "16")]
        zones: u16,
        /// Print the gateway `[[devices]]` entry for this panel and exit.
        #[arg(long)]
        print_config: bool,
        /// Put this zone in fire after `--after`.
        #[arg(long)]
        fire_zone: Option<u16>,
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        after: Duration,
    },
    /// A pump room served as Modbus TCP (register map: `gatehouse-sim pump-room --print-points`).
    PumpRoom {
        #[arg(long, default_value = "127.0.0.1:15020")]
        listen: SocketAddr,
        /// Print the gateway point configuration for this pump room and exit.
        #[arg(long)]
        print_points: bool,
        /// Trip the duty pump after this long.
        #[arg(long, value_parser = parse_duration)]
        trip_after: Option<Duration>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs to stderr, like the hub's and the gateway's: stdout is the demo's console.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,rumqttd=off".into()),
        )
        .init();
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        s.cancel();
    });
    match Args::parse().command {
        Command::Demo {
            http_addr,
            data_dir,
            run_for,
            operator,
        } => {
            demo::run(demo::DemoOptions {
                http_addr,
                data_dir,
                run_for,
                operator: match operator {
                    DemoOperatorArg::Script => demo::DemoOperator::Script,
                    DemoOperatorArg::Board => demo::DemoOperator::Board,
                },
                inbox_addr: None,
            })
            .await
        }
        Command::Load(args) => load::cli::command(args, stop).await,
        Command::Bench(args) => bench::cli::command(args).await,
        Command::ModbusLoad(args) => modbus_load::cli::command(args, stop).await,
        Command::Door {
            broker,
            id,
            password,
            rate,
        } => {
            DoorController(MqttDevice::connect(broker, &id, password.as_deref()))
                .background("door-1", rate, stop)
                .await;
            Ok(())
        }
        Command::Intercom {
            broker,
            id,
            password,
            rate,
        } => {
            Intercom(MqttDevice::connect(broker, &id, password.as_deref()))
                .background("lobby", rate, stop)
                .await;
            Ok(())
        }
        Command::FirePanel {
            broker,
            id,
            password,
            zone,
            after,
        } => {
            let panel = FirePanel(MqttDevice::connect(broker, &id, password.as_deref()));
            tokio::time::sleep(after).await;
            panel.fire_alarm(&zone, "simulated fire alarm").await?;
            println!("fire alarm sent for zone {zone}");
            stop.cancelled().await;
            Ok(())
        }
        Command::FirePanelDc09 {
            receiver,
            account,
            key,
            key_hex,
            udp,
            sia,
            zone,
            after,
            restore_after,
            poll,
        } => {
            use firepanel::dc09::{Dc09Panel, Format, Transport};
            use gatehouse_gateway::adapters::dc09::crypto::Key;
            let key = match (key, key_hex) {
                (Some(t), _) => Some(Key::from_text(&t)?),
                (None, Some(h)) => Some(Key::from_hex(&h)?),
                (None, None) => None,
            };
            let transport = if udp { Transport::Udp } else { Transport::Tcp };
            let format = if sia { Format::SiaDcs } else { Format::ContactId };
            let panel = std::sync::Arc::new(tokio::sync::Mutex::new(Dc09Panel::new(
                receiver, &account, key, transport, format,
            )));
            tokio::spawn(firepanel::dc09::poll_loop(panel.clone(), poll, stop.clone()));
            tokio::time::sleep(after).await;
            let answer = panel.lock().await.fire_alarm(zone).await?;
            println!("DC-09 account {account}: fire alarm zone {zone} sent, answer {answer:?}");
            if let Some(restore_after) = restore_after {
                tokio::time::sleep(restore_after).await;
                let answer = panel.lock().await.fire_restore(zone).await?;
                println!("DC-09 account {account}: zone {zone} restored, answer {answer:?}");
            }
            stop.cancelled().await;
            Ok(())
        }
        Command::FirePanelModbus {
            listen,
            zones,
            print_config,
            fire_zone,
            after,
        } => {
            let panel = firepanel::modbus::ZoneMapPanel::new(zones);
            if print_config {
                print!(
                    "{}",
                    panel.gateway_config("fire-panel-modbus", "fire-control-room", &listen.to_string())
                );
                return Ok(());
            }
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("serving Modbus on {listen}"))?;
            println!("fire panel serving Modbus TCP on {listen} ({zones} zones)");
            tokio::spawn(panel.clone().serve(listener, stop.clone()));
            if let Some(zone) = fire_zone {
                tokio::time::sleep(after).await;
                panel.fire(zone);
                println!("zone {zone} in fire");
            }
            stop.cancelled().await;
            Ok(())
        }
        Command::PumpRoom {
            listen,
            print_points,
            trip_after,
        } => {
            if print_points {
                print!("{}", gatehouse_sim::pumproom::gateway_points_toml());
                return Ok(());
            }
            let room = PumpRoom::start(listen)
                .await
                .with_context(|| format!("serving Modbus on {listen}"))?;
            println!("pump room serving Modbus TCP on {}", room.addr());
            if let Some(after) = trip_after {
                tokio::select! {
                    _ = tokio::time::sleep(after) => { room.trip_pump(1); println!("duty pump tripped"); }
                    _ = stop.cancelled() => {}
                }
            }
            stop.cancelled().await;
            room.shutdown();
            Ok(())
        }
    }
}
