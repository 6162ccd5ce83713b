//! The gateway link's guards (issue 9): sequence numbers checked, batches refused out loud,
//! a connected gateway that makes no progress alarmed, and health that fails when the writer
//! cannot commit. Streams played by hand over real gRPC; real SQLite.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_hub::{HubConfig, ManualClock, RunningHub};
use gatehouse_proto::{DoorEvent, DoorEventType, Downlink, RejectionReason, downlink, event::Body};
use serde_json::Value;

use common::{Link, WAIT, get, http};

const GW: &str = "gw-1";
const ESTATE: &str = "estate-a";
const T0: i64 = 1_764_000_000_000;

fn config(db: &Path, extra: &str) -> HubConfig {
    common::with_admin(
        HubConfig::from_toml(&format!(
            "[hub]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\n\n[tls]\nplaintext = true\n\n[[gateways]]\nid = \"{GW}\"\nestate = \"{ESTATE}\"\n\n\
         [[estates]]\nid = \"{ESTATE}\"\nname = \"Riverside Gardens\"\n\n{extra}\n",
            common::db::database_url(db)
        ))
        .expect("test configuration is valid"),
    )
}

async fn start(db: &Path, clock: &ManualClock, extra: &str) -> RunningHub {
    gatehouse_hub::start_with_clock(config(db, extra), Arc::new(clock.clone()))
        .await
        .expect("hub starts")
}

fn forced() -> Body {
    Body::Door(DoorEvent {
        r#type: DoorEventType::Forced as i32,
        door: "main".into(),
        seconds: 0,
    })
}

async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metrics(hub: &RunningHub) -> String {
    common::admin_client()
        .get(format!("http://{}/metrics", hub.http_addr()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

async fn active(hub: &RunningHub, condition: &str) -> Vec<Value> {
    get(hub, "/api/v1/alarms?state=active")
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["condition"] == condition)
        .collect()
}

async fn stored_last_seq(db: &Path) -> i64 {
    let pool = common::db::inspect_at(db).await;
    let n = sqlx::query_scalar("SELECT last_seq FROM gateways WHERE id = $1")
        .bind(GW)
        .fetch_one(&pool)
        .await
        .expect("gateway row");
    pool.close().await;
    n
}

/// The hub's answer to a refused batch: a Rejection, then the stream closed with a status.
async fn expect_rejection(link: &mut Link, answer: Result<Option<Downlink>, tonic::Status>, reason: RejectionReason) {
    match answer {
        Ok(Some(Downlink {
            msg: Some(downlink::Msg::Rejection(r)),
        })) => {
            assert_eq!(r.reason(), reason, "{r:?}");
            assert!(!r.detail.is_empty());
        }
        other => panic!("expected a Rejection, got {other:?}"),
    }
    match link.next().await {
        Err(status) => assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}"),
        other => panic!("expected the stream closed with a status, got {other:?}"),
    }
}

#[tokio::test]
async fn a_seq_at_the_top_of_the_range_or_a_huge_jump_is_refused_out_loud_and_the_real_gateway_keeps_delivering() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let clock = ManualClock::new(T0);
    let hub = start(&db, &clock, "").await;

    // The real gateway delivers three events.
    let mut real = Link::connect(&hub, GW, ESTATE, &["door-1"]).await;
    real.send(vec![("door-1", "main gate", forced()); 3]).await;
    assert_eq!(stored_last_seq(&db).await, 3);

    // Someone sends under its id a seq at the top of the range …
    let mut rogue = Link::connect(&hub, GW, ESTATE, &["door-1"]).await;
    let answer = rogue.send_seqs(&[(1 << 63) - 1], forced()).await;
    expect_rejection(&mut rogue, answer, RejectionReason::SeqCeiling).await;
    // … and a jump of two billion.
    let mut rogue = Link::connect(&hub, GW, ESTATE, &["door-1"]).await;
    let answer = rogue.send_seqs(&[4, 2_000_000_004], forced()).await;
    expect_rejection(&mut rogue, answer, RejectionReason::SeqGap).await;

    assert_eq!(
        stored_last_seq(&db).await,
        3,
        "nothing of the refused batches was stored"
    );
    let text = metrics(&hub).await;
    assert!(
        text.contains("gatehouse_hub_batches_rejected_total{reason=\"seq_ceiling\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("gatehouse_hub_batches_rejected_total{reason=\"seq_gap\"} 1"),
        "{text}"
    );
    let alarm = active(&hub, "gateway_stalled").await;
    assert_eq!(alarm.len(), 1, "one alarm on that gateway");
    assert!(
        alarm[0]["message"].as_str().unwrap_or("").contains("refused"),
        "{alarm:?}"
    );

    // The real gateway reconnects (its stream was replaced), is told 3, and goes on.
    let mut real = Link::connect(&hub, GW, ESTATE, &["door-1"]).await;
    assert_eq!(real.seq(), 3, "Welcome.last_seq is the stored one");
    real.send(vec![("door-1", "main gate", forced())]).await;
    assert_eq!(stored_last_seq(&db).await, 4);
    eventually("the alarm cleared by progress", async || {
        active(&hub, "gateway_stalled").await.is_empty()
    })
    .await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_connected_gateway_that_holds_events_and_sends_none_raises_gateway_stalled_until_it_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let clock = ManualClock::new(T0);
    let hub = start(&db, &clock, "[ingest]\nstall_after_s = 60\n").await;

    // Connected, heartbeating (so never silent), holding 5 events it never sends.
    let link = Link::connect_holding(&hub, GW, ESTATE, &["door-1"], 5, 5).await;
    link.heartbeat_holding(5, 5).await;
    clock.advance_s(30);
    hub.tick_now().await.unwrap();
    assert!(
        active(&hub, "gateway_stalled").await.is_empty(),
        "not yet: within stall_after_s"
    );
    // Reconnecting does not count as progress.
    drop(link);
    let mut link = Link::connect_holding(&hub, GW, ESTATE, &["door-1"], 5, 5).await;
    link.heartbeat_holding(5, 5).await;
    clock.advance_s(31);
    // Not an assertion of timing: the heartbeat travels stream → writer on another task
    // than the tick request, so give it a moment to be queued first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    hub.tick_now().await.unwrap();
    let alarm = active(&hub, "gateway_stalled").await;
    assert_eq!(alarm.len(), 1, "{alarm:?}");
    assert!(
        active(&hub, "gateway_silent").await.is_empty(),
        "heartbeats keep it from being silent"
    );
    let text = metrics(&hub).await;
    assert!(
        text.contains("gatehouse_hub_gateway_stalled{gateway=\"gw-1\"} 1"),
        "{text}"
    );

    // It delivers: the alarm clears.
    link.send(vec![("door-1", "main gate", forced()); 5]).await;
    eventually("the stall alarm cleared", async || {
        active(&hub, "gateway_stalled").await.is_empty()
    })
    .await;
    let text = metrics(&hub).await;
    assert!(
        text.contains("gatehouse_hub_gateway_stalled{gateway=\"gw-1\"} 0"),
        "{text}"
    );

    // Away for an hour, it comes back holding what it queued meanwhile: that is not a stall.
    drop(link);
    eventually("the stream gone", async || !hub.links().is_connected(GW)).await;
    clock.advance_s(3600);
    let link = Link::connect_holding(&hub, GW, ESTATE, &["door-1"], 50, 40).await;
    link.heartbeat_holding(50, 40).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    hub.tick_now().await.unwrap();
    assert!(
        active(&hub, "gateway_stalled").await.is_empty(),
        "a fresh start after a real absence"
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_fails_while_another_process_holds_the_write_lock_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let clock = ManualClock::new(T0);
    let hub = start(&db, &clock, "[ingest]\nwriter_stall_s = 2\n").await;
    let (status, _) = http(&hub, "GET", "/healthz", None).await;
    assert_eq!(status, 200);

    // A backup tool (another connection) takes the write lock and holds it. PostgreSQL has
    // no database-wide write lock: the tables every writer transaction touches (the writer
    // lease's row is renewed by each), locked.
    let pool = common::db::inspect_at(&db).await;
    let mut conn = pool.acquire().await.expect("second connection");
    if common::db::on_postgres() {
        sqlx::query("BEGIN").execute(&mut *conn).await.expect("begin");
        sqlx::query("LOCK TABLE events, gateways, hub_leases IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *conn)
            .await
            .expect("lock");
    } else {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await.expect("lock");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = http(&hub, "GET", "/healthz", None).await;
        if status == 503 {
            assert!(body.to_string().contains("writer"), "{body}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "/healthz never failed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ready, _) = http(&hub, "GET", "/readyz", None).await;
    assert_eq!(ready, 503);
    sqlx::query("ROLLBACK").execute(&mut *conn).await.expect("unlock");
    drop(conn);
    pool.close().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while http(&hub, "GET", "/healthz", None).await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "/healthz never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    hub.shutdown().await;
}
