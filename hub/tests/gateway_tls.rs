//! Gateways over mutual TLS (issue 12 §1, §7): real handshakes on loopback with certificates
//! minted by rcgen at test time, through the hub's own `tls::mint`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use gatehouse_hub::tls::GatewayIdentity;
use gatehouse_hub::tls::mint::{self, Ca, Minted, Validity};
use gatehouse_hub::{HubConfig, RunningHub};
use gatehouse_proto::gateway_link_client::GatewayLinkClient;
use gatehouse_proto::{
    DoorEvent, Downlink, Event, EventBatch, Hello, RejectionReason, Uplink, downlink, event::Body, uplink,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Streaming};

mod common;

const WAIT: Duration = Duration::from_secs(10);
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// A hub over TLS with gateways gw-a (estate-a) and gw-b (estate-b) configured.
struct Rig {
    dir: tempfile::TempDir,
    ca: Ca,
    hub: RunningHub,
}

impl Rig {
    async fn start() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new(Validity::from_now(YEAR)).unwrap();
        let server = ca
            .server(&["localhost".into(), "127.0.0.1".into()], Validity::from_now(YEAR))
            .unwrap();
        let layout = mint::Layout::new(dir.path());
        mint::write(&layout.ca_cert(), &ca.cert_pem, false).unwrap();
        mint::write(&layout.ca_key(), &ca.key_pem(), true).unwrap();
        mint::write(&layout.hub_cert(), &server.cert_pem, false).unwrap();
        mint::write(&layout.hub_key(), &server.key_pem, true).unwrap();
        mint::write(&layout.crl(), &ca.crl(&[], 1).unwrap(), false).unwrap();
        let toml = format!(
            "[hub]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\ndatabase = \"{db}\"\n\n\
             [tls]\ncert = \"{cert}\"\nkey = \"{key}\"\nclient_ca = \"{ca}\"\ncrl = \"{crl}\"\ncrl_poll_s = 1\n\n\
             [[gateways]]\nid = \"gw-a\"\nestate = \"estate-a\"\n\n[[gateways]]\nid = \"gw-b\"\nestate = \"estate-b\"\n\n\
             [[estates]]\nid = \"estate-a\"\nname = \"Riverside Gardens\"\n\n[[estates]]\nid = \"estate-b\"\nname = \"Hillside Court\"\n",
            db = common::db::database_url(&dir.path().join("hub.db")),
            cert = layout.hub_cert().display(),
            key = layout.hub_key().display(),
            ca = layout.ca_cert().display(),
            crl = layout.crl().display(),
        );
        let hub = gatehouse_hub::start(HubConfig::from_toml(&toml).unwrap())
            .await
            .unwrap();
        Rig { dir, ca, hub }
    }

    fn client(&self, estate: &str, gateway: &str) -> Minted {
        self.ca
            .client(&GatewayIdentity::new(estate, gateway), Validity::from_now(YEAR))
            .unwrap()
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("hub.db")
    }

    async fn count(&self, sql: &'static str) -> i64 {
        let pool = common::db::inspect_at(&self.db()).await;
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    }
}

/// A GatewayLink stream over TLS (client certificate `cert`, if any), after Hello.
struct Stream {
    tx: mpsc::Sender<Uplink>,
    rx: Streaming<Downlink>,
}

async fn open(rig: &Rig, cert: Option<&Minted>, gateway: &str, estate: &str) -> Result<Stream, tonic::Status> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&rig.ca.cert_pem))
        .domain_name("localhost");
    if let Some(c) = cert {
        tls = tls.identity(Identity::from_pem(&c.cert_pem, &c.key_pem));
    }
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{}", rig.hub.grpc_addr().port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(WAIT)
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect: {e:?}")))?;
    let (tx, rx) = mpsc::channel(16);
    tx.send(Uplink {
        msg: Some(uplink::Msg::Hello(Hello {
            gateway_id: gateway.into(),
            estate_id: estate.into(),
            software_version: "test".into(),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut rx = tokio::time::timeout(WAIT, GatewayLinkClient::new(channel).connect(ReceiverStream::new(rx)))
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no answer"))??
        .into_inner();
    match tokio::time::timeout(WAIT, rx.message()).await {
        Ok(Ok(Some(Downlink {
            msg: Some(downlink::Msg::Welcome(_)),
        }))) => Ok(Stream { tx, rx }),
        Ok(Err(status)) => Err(status),
        other => panic!("expected Welcome, got {other:?}"),
    }
}

fn door_event(gateway: &str, estate: &str, seq: u64, door: &str) -> Event {
    Event {
        event_id: format!("{gateway}-{seq}"),
        seq,
        gateway_id: gateway.into(),
        estate_id: estate.into(),
        device_id: "door-1".into(),
        occurred_at_ms: gatehouse_proto::now_ms(),
        received_at_ms: gatehouse_proto::now_ms(),
        body: Some(Body::Door(DoorEvent {
            r#type: 1,
            door: door.into(),
            seconds: 0,
        })),
        ..Default::default()
    }
}

impl Stream {
    async fn send(&self, events: Vec<Event>) {
        let _ = self
            .tx
            .send(Uplink {
                msg: Some(uplink::Msg::Events(EventBatch { events })),
            })
            .await;
    }

    /// The next downlink message, or the status the stream ended with.
    async fn next(&mut self) -> Result<Option<downlink::Msg>, tonic::Status> {
        match tokio::time::timeout(WAIT, self.rx.message()).await {
            Ok(Ok(m)) => Ok(m.and_then(|m| m.msg)),
            Ok(Err(s)) => Err(s),
            Err(_) => panic!("no downlink message within {WAIT:?}"),
        }
    }

    async fn acked(&mut self, through: u64) {
        loop {
            match self.next().await {
                Ok(Some(downlink::Msg::Ack(a))) if a.through_seq >= through => return,
                Ok(Some(_)) => {}
                other => panic!("expected Ack through {through}, got {other:?}"),
            }
        }
    }
}

fn code(r: Result<Stream, tonic::Status>) -> Code {
    match r {
        Ok(_) => panic!("the stream was accepted"),
        Err(s) => s.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_configured_gateway_with_its_own_valid_certificate_delivers_events() {
    let rig = Rig::start().await;
    let gw_a = rig.client("estate-a", "gw-a");
    let mut real = open(&rig, Some(&gw_a), "gw-a", "estate-a")
        .await
        .expect("gw-a accepted");
    real.send(vec![door_event("gw-a", "estate-a", 1, "main gate")]).await;
    real.acked(1).await;

    // No client certificate: the TLS layer lets a console through, GatewayLink does not.
    assert_eq!(code(open(&rig, None, "gw-a", "estate-a").await), Code::Unauthenticated);

    // A certificate from another CA, and an expired one: refused at the handshake.
    let stranger_ca = Ca::new(Validity::from_now(YEAR)).unwrap();
    let forged = stranger_ca
        .client(&GatewayIdentity::new("estate-a", "gw-a"), Validity::from_now(YEAR))
        .unwrap();
    assert_ne!(code(open(&rig, Some(&forged), "gw-a", "estate-a").await), Code::Ok);
    let now = SystemTime::now();
    let expired = rig
        .ca
        .client(
            &GatewayIdentity::new("estate-a", "gw-a"),
            Validity {
                not_before: now - 2 * YEAR,
                not_after: now - YEAR,
            },
        )
        .unwrap();
    assert_ne!(code(open(&rig, Some(&expired), "gw-a", "estate-a").await), Code::Ok);

    // Estate B's gateway cannot say Hello as gateway A, nor as B in estate A.
    let gw_b = rig.client("estate-b", "gw-b");
    assert_eq!(
        code(open(&rig, Some(&gw_b), "gw-a", "estate-a").await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(open(&rig, Some(&gw_b), "gw-b", "estate-a").await),
        Code::PermissionDenied
    );
    // As itself it connects, but cannot deliver events of estate A.
    let mut b = open(&rig, Some(&gw_b), "gw-b", "estate-b")
        .await
        .expect("gw-b accepted");
    b.send(vec![door_event("gw-b", "estate-a", 1, "main gate")]).await;
    assert_eq!(b.next().await.err().map(|s| s.code()), Some(Code::InvalidArgument));

    // A gateway not in [[gateways]], with a valid certificate: refused, nothing recorded.
    let unknown = rig.client("estate-a", "gw-x");
    assert_eq!(
        code(open(&rig, Some(&unknown), "gw-x", "estate-a").await),
        Code::PermissionDenied
    );
    assert_eq!(rig.count("SELECT COUNT(*) FROM gateways WHERE id = 'gw-x'").await, 0);
    assert_eq!(
        rig.count("SELECT COUNT(*) FROM alarms WHERE gateway_id = 'gw-x'").await,
        0
    );

    // None of that disturbed the real gateway's stream.
    real.send(vec![door_event("gw-a", "estate-a", 2, "main gate")]).await;
    real.acked(2).await;
    // (gw-b's stream was closed for its foreign event.)
    assert_eq!(rig.hub.links().connected(), vec!["gw-a".to_owned()]);

    // An over-long text is rejected out loud, and nothing of the batch stored.
    real.send(vec![
        door_event("gw-a", "estate-a", 3, "ok"),
        door_event("gw-a", "estate-a", 4, &"x".repeat(100_000)),
    ])
    .await;
    match real.next().await {
        Ok(Some(downlink::Msg::Rejection(r))) => {
            assert_eq!(r.reason(), RejectionReason::FieldTooLong);
            assert!(r.detail.contains("door.door"), "{}", r.detail);
        }
        other => panic!("expected a Rejection, got {other:?}"),
    }
    assert_eq!(
        rig.count("SELECT COUNT(*) FROM events WHERE seq >= 3 AND gateway_id = 'gw-a'")
            .await,
        0
    );
    let metrics = reqwest::get(format!("http://{}/metrics", rig.hub.http_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gatehouse_hub_batches_rejected_total{reason=\"field_too_long\"} 1"),
        "{metrics}"
    );
    // The wrong-CA and the expired certificate (a client may try a refused handshake again).
    let failed: u64 = metrics
        .lines()
        .find(|l| l.contains("reason=\"tls_handshake_failed\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(failed >= 2, "{metrics}");
    rig.hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_is_refused_after_the_crl_reload_and_its_live_stream_cut() {
    let rig = Rig::start().await;
    let gw_a = rig.client("estate-a", "gw-a");
    let gw_b = rig.client("estate-b", "gw-b");
    let mut a = open(&rig, Some(&gw_a), "gw-a", "estate-a")
        .await
        .expect("gw-a accepted");
    let mut b = open(&rig, Some(&gw_b), "gw-b", "estate-b")
        .await
        .expect("gw-b accepted");

    let cert = rig.dir.path().join("gw-a.pem");
    std::fs::write(&cert, &gw_a.cert_pem).unwrap();
    // mtime granularity: make sure the CRL file's time changes.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    mint::revoke(&mint::Layout::new(rig.dir.path()), &cert).unwrap();

    let ended = loop {
        match a.next().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended without a status"),
            Err(s) => break s,
        }
    };
    assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");
    assert_ne!(code(open(&rig, Some(&gw_a), "gw-a", "estate-a").await), Code::Ok);
    // Gateway B is not revoked: its stream goes on.
    b.send(vec![door_event("gw-b", "estate-b", 1, "gate")]).await;
    b.acked(1).await;
    rig.hub.shutdown().await;
}

#[tokio::test]
async fn plaintext_on_a_non_loopback_address_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[hub]\ngrpc_listen = \"0.0.0.0:0\"\nhttp_listen = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n\n\
         [tls]\nplaintext = true\n",
        dir.path().join("hub.db").display()
    );
    let err = HubConfig::from_toml(&toml).unwrap_err().to_string();
    assert!(err.contains("tls.plaintext") && err.contains("loopback"), "{err}");
    assert!(!Path::new(&dir.path().join("hub.db")).exists());
}
