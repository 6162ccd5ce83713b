//! A Modbus fire panel against a real tokio-modbus TCP server on loopback: zone words
//! change, fire events (and restores) come out; reset and silence write the map's command
//! registers.

use std::{
    future::{Ready, ready},
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use gatehouse_gateway::{
    adapters::{AdapterContext, CommandRequest, EventSink, modbus_fire::run_device},
    config::Config,
    metrics::Metrics,
    registry::Registry,
};
use gatehouse_proto::{self as pb, FireEventType, event::Body};
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
    time::timeout,
};
use tokio_modbus::{ExceptionCode, Request, Response, server::Service, server::tcp::Server};
use tokio_util::sync::CancellationToken;

/// Input registers 0..16 hold zone words; holding registers 100 (reset) and 101 (silence).
#[derive(Clone, Default)]
struct Panel {
    input: Arc<Mutex<Vec<u16>>>,
    holding: Arc<Mutex<Vec<u16>>>,
}

impl Service for Panel {
    type Request = Request<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let result = match req {
            Request::ReadInputRegisters(a, n) => {
                let regs = self.input.lock().unwrap_or_else(|p| p.into_inner());
                regs.get(usize::from(a)..usize::from(a) + usize::from(n))
                    .map(|w| Some(Response::ReadInputRegisters(w.to_vec())))
                    .ok_or(ExceptionCode::IllegalDataAddress)
            }
            Request::WriteSingleRegister(a, v) => {
                let mut regs = self.holding.lock().unwrap_or_else(|p| p.into_inner());
                match regs.get_mut(usize::from(a)) {
                    Some(slot) => {
                        *slot = v;
                        Ok(Some(Response::WriteSingleRegister(a, v)))
                    }
                    None => Err(ExceptionCode::IllegalDataAddress),
                }
            }
            _ => Err(ExceptionCode::IllegalFunction),
        };
        ready(result)
    }
}

async fn serve(panel: Panel, stop: CancellationToken) -> SocketAddr {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let server = Server::new(listener);
        let on_connected = move |stream, _| {
            let service = panel.clone();
            async move { Ok(Some((service, stream))) }
        };
        tokio::select! {
            () = stop.cancelled() => {}
            _ = server.serve(&on_connected, |_| {}) => {}
        }
    });
    addr
}

async fn next_fire(events: &mut mpsc::Receiver<pb::Event>) -> (i32, String, String) {
    loop {
        let e = timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("an event within 5 s")
            .expect("channel open");
        if let Some(Body::Fire(f)) = e.body {
            assert_eq!((e.device_id.as_str(), e.area.as_str()), ("fire-panel-b", "block-b"));
            return (f.r#type, f.zone, f.text);
        }
    }
}

#[tokio::test]
async fn a_zone_change_becomes_a_fire_event_and_its_clearing_a_restore() {
    let stop = CancellationToken::new();
    let panel = Panel {
        input: Arc::new(Mutex::new(vec![0; 16])),
        holding: Arc::new(Mutex::new(vec![0; 128])),
    };
    // Zone 2 starts in fault: reported on the first read.
    panel.input.lock().expect("lock")[1] = 0b100;
    let addr = serve(panel.clone(), stop.clone()).await;
    let config = Config::from_toml(&format!(
        r#"
[gateway]
id = "gw-fire"
estate = "estate-b"
data_dir = "/tmp/unused"
hubs = ["http://127.0.0.1:1"]

[uplink]
plaintext = true

[[devices]]
id = "fire-panel-b"
kind = "fire_panel"
area = "block-b"
[devices.modbus_fire]
address = "{addr}"
unit = 1
poll_ms = 50
timeout_ms = 200
table = "input"
first_register = 0
zones = 16
first_zone = 1
bits = {{ fire = 0, pre_alarm = 1, trouble = 2, disabled = 3, active = 4 }}
reset_register = 100
silence_register = 101
"#
    ))
    .expect("config");
    let registry = Registry::from_config(&config);
    let device = registry.get("fire-panel-b").expect("registered").clone();
    let cfg = config.devices[0].modbus_fire.clone().expect("modbus_fire");
    let (tx, mut events) = mpsc::channel(256);
    let metrics = Arc::new(Metrics::default());
    let ctx = AdapterContext {
        registry,
        sink: EventSink::new(tx),
        metrics: metrics.clone(),
        health: Default::default(),
    };
    let (commands, rx) = mpsc::channel(4);
    tokio::spawn(run_device(ctx, device, cfg, config.modbus.clone(), rx, stop.clone()));

    assert_eq!(
        next_fire(&mut events).await,
        (FireEventType::Fault as i32, "2".into(), "Fault".into())
    );
    panel.input.lock().expect("lock")[16 - 1] = 0b1; // zone 16 in fire
    assert_eq!(
        next_fire(&mut events).await,
        (FireEventType::FireAlarm as i32, "16".into(), "Fire".into())
    );
    panel.input.lock().expect("lock")[16 - 1] = 0;
    assert_eq!(
        next_fire(&mut events).await,
        (
            FireEventType::FireAlarmRestore as i32,
            "16".into(),
            "Fire cleared".into()
        )
    );

    for (action, register) in [("reset", 100usize), ("silence", 101)] {
        let (reply, answer) = oneshot::channel();
        let command = pb::Command {
            command_id: format!("k-{action}"),
            device_id: "fire-panel-b".into(),
            action: action.into(),
            ..Default::default()
        };
        commands
            .send(CommandRequest { command, reply })
            .await
            .expect("adapter running");
        let result = timeout(Duration::from_secs(5), answer)
            .await
            .expect("answered")
            .expect("result");
        assert!(result.ok, "{action}: {}", result.message);
        assert_eq!(
            panel.holding.lock().expect("lock")[register],
            1,
            "{action} register written"
        );
    }
    let (reply, answer) = oneshot::channel();
    let command = pb::Command {
        command_id: "k-evac".into(),
        device_id: "fire-panel-b".into(),
        action: "evacuate".into(),
        ..Default::default()
    };
    commands
        .send(CommandRequest { command, reply })
        .await
        .expect("adapter running");
    assert!(
        !answer.await.expect("result").ok,
        "an action the map has no register for fails"
    );
    assert_eq!(metrics.fire_zone_changes.load(std::sync::atomic::Ordering::Relaxed), 3);
    stop.cancel();
}
