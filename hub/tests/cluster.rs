//! Several hubs on one PostgreSQL (`cluster`): the writer is a fenced lease. Two hubs in this
//! process on one fresh database: the standby refuses gateways, forwards operators' changes to
//! the active and relays its live stream; the active's transactions stop committing the moment
//! its lease is taken over, and the lease passes on.
//! PostgreSQL only (`GATEHOUSE_TEST_PG_URL`); skipped by name without it.

mod common;

use common::{ESTATE_A, Link, db, eventually};
use gatehouse_hub::{HubConfig, RunningHub};
use gatehouse_proto::AcknowledgeAlarmRequest;
use gatehouse_proto::command_centre_client::CommandCentreClient;
use gatehouse_proto::gateway_link_client::GatewayLinkClient;
use gatehouse_proto::{Hello, Uplink, event::Body, uplink};
use serde_json::json;
use sqlx::Connection as _;
use tokio_stream::wrappers::ReceiverStream;

fn config(url: &str, hub_id: &str) -> HubConfig {
    config_with(url, hub_id, "")
}

/// `cluster` holds more `[cluster]` keys.
fn config_with(url: &str, hub_id: &str, cluster: &str) -> HubConfig {
    HubConfig::from_toml(&format!(
        "[hub]\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\ndatabase = \"{url}\"\nhub_id = \"{hub_id}\"\n\n\
         [tls]\nplaintext = true\n\n[cluster]\nlease_s = 2\n{cluster}\n\
         [[gateways]]\nid = \"gw-1\"\nestate = \"estate-a\"\n\n{ESTATE_A}"
    ))
    .map(common::with_admin)
    .expect("a valid configuration")
}

fn door() -> Body {
    Body::Access(gatehouse_proto::AccessEvent {
        door: "door-1".into(),
        result: gatehouse_proto::AccessResult::Granted as i32,
        ..Default::default()
    })
}

/// The status of `/readyz`.
async fn ready(hub: &RunningHub) -> (u16, String) {
    let r = reqwest::get(format!("http://{}/readyz", hub.http_addr()))
        .await
        .expect("HTTP answers");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// Rows stored for a gateway, and the lease's holder and epoch, read straight from the database.
async fn stored(url: &str, gateway: &str) -> (i64, String, i64) {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("database");
    let (events,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM events WHERE gateway_id = $1")
        .bind(gateway)
        .fetch_one(&mut conn)
        .await
        .expect("count");
    let (holder, epoch): (String, i64) = sqlx::query_as("SELECT holder, epoch FROM hub_leases WHERE name = 'writer'")
        .fetch_one(&mut conn)
        .await
        .expect("the lease row");
    (events, holder, epoch)
}

/// A Hello to `hub`: the status it refuses the stream with, if it does.
async fn hello_status(hub: &RunningHub) -> Option<tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", hub.grpc_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(Uplink {
        msg: Some(uplink::Msg::Hello(Hello {
            gateway_id: "gw-1".into(),
            estate_id: "estate-a".into(),
            software_version: "test".into(),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    match GatewayLinkClient::new(channel).connect(ReceiverStream::new(rx)).await {
        Err(s) => Some(s),
        Ok(mut stream) => stream.get_mut().message().await.err(),
    }
}

#[tokio::test]
async fn a_standby_refuses_and_a_fenced_active_stores_nothing_after_losing_its_lease() {
    let Some(server) = db::pg_server_or_skip("cluster::a_standby_refuses_and_a_fenced_active_stores_nothing") else {
        return;
    };
    let url = db::fresh_database(&server);
    // The first hub finds the lease free and is active when `start` returns; the second is a
    // standby.
    let a = gatehouse_hub::start(config(&url, "hub-a")).await.expect("hub a starts");
    assert_eq!(a.role().name(), "active");
    let b = gatehouse_hub::start(config(&url, "hub-b")).await.expect("hub b starts");
    assert_eq!(b.role().name(), "standby");
    assert_eq!(ready(&a).await.0, 200);

    // The standby: alive, ready for operators once its relay has read the outbox, no gateway,
    // reads served, writes forwarded (below, and in `an_operator_on_either_hub_*`).
    eventually("the standby to be ready", || async { ready(&b).await.0 == 200 }).await;
    assert!(ready(&b).await.1.contains("standby"));
    let healthz = reqwest::get(format!("http://{}/healthz", b.http_addr())).await.unwrap();
    assert_eq!(healthz.status().as_u16(), 200);
    let refused = hello_status(&b).await.expect("the standby refuses the stream");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("standby hub; try another"), "{refused:?}");
    assert!(refused.message().contains("the active hub is hub-a/"), "{refused:?}");
    let read = common::admin_client()
        .get(format!("http://{}/api/v1/incidents", b.http_addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status().as_u16(), 200);
    let metrics = reqwest::get(format!("http://{}/metrics", b.http_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("gatehouse_hub_role{role=\"standby\"} 0"), "{metrics}");

    // The active stores a batch; then its lease is taken over (as a hub that found it
    // expired would), to be kept by the thief for a minute.
    let mut link = Link::connect(&a, "gw-1", "estate-a", &["door-1"]).await;
    link.send(vec![("door-1", "gate", door())]).await;
    let (events, holder, epoch) = stored(&url, "gw-1").await;
    assert_eq!(events, 1);
    assert!(holder.starts_with("hub-a/"), "{holder}");
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(
        "UPDATE hub_leases SET holder = 'thief', epoch = epoch + 1, \
         expires_at_ms = CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) + 60000 WHERE name = 'writer'",
    )
    .execute(&mut admin)
    .await
    .unwrap();

    // Its next transaction (this batch, or its timer tick) is fenced: rolled back, the stream
    // cut with UNAVAILABLE, the hub a standby.
    let answer = link.send_seqs(&[2, 3], door()).await;
    assert!(
        matches!(&answer, Err(s) if s.code() == tonic::Code::Unavailable),
        "expected UNAVAILABLE, got {answer:?}"
    );
    eventually("hub a to step down", || async { a.role().name() == "standby" }).await;
    let (events, holder, _) = stored(&url, "gw-1").await;
    assert_eq!(
        (events, holder.as_str()),
        (1, "thief"),
        "nothing after the takeover is stored"
    );
    assert!(ready(&a).await.1.contains("standby"));
    // The thief left hub a's address in the lease: b forwards a change there, and a, a
    // standby itself now, refuses it rather than forwarding it again.
    let looped = common::admin_client()
        .post(format!("http://{}/api/v1/incidents", b.http_addr()))
        .json(&incident("Loop"))
        .send()
        .await
        .unwrap();
    assert_eq!(looped.status().as_u16(), 503);
    assert_eq!(
        looped.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let body = looped.text().await.unwrap();
    assert!(body.contains("standby too"), "{body}");

    // The thief lets go: one of the two hubs takes the lease, under a new epoch, and the
    // gateway resumes there from what was stored.
    sqlx::query("UPDATE hub_leases SET expires_at_ms = 0 WHERE name = 'writer'")
        .execute(&mut admin)
        .await
        .unwrap();
    eventually("a hub to take the lease over", || async {
        a.role().name() == "active" || b.role().name() == "active"
    })
    .await;
    let active = if a.role().name() == "active" { &a } else { &b };
    let (_, holder, new_epoch) = stored(&url, "gw-1").await;
    assert_eq!(new_epoch, epoch + 2, "{holder}");
    let mut link = Link::connect(active, "gw-1", "estate-a", &["door-1"]).await;
    assert_eq!(link.seq(), 1, "the Welcome names what was stored");
    link.send(vec![("door-1", "gate", door())]).await;
    assert_eq!(stored(&url, "gw-1").await.0, 2);
    b.shutdown().await;
    a.shutdown().await;
}

fn incident(title: &str) -> serde_json::Value {
    json!({"estate": "estate-a", "area": "gate", "category": "fire", "priority": "P1",
        "title": title, "operator": "wang"})
}

/// An open `GET /api/v1/stream` on `hub`, read past its hello.
async fn stream(hub: &RunningHub) -> (reqwest::Response, String) {
    let mut response = common::admin_client()
        .get(format!("http://{}/api/v1/stream", hub.http_addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut seen = String::new();
    while !seen.contains("event: hello") {
        seen.push_str(&next_chunk(&mut response).await);
    }
    (response, seen)
}

async fn next_chunk(response: &mut reqwest::Response) -> String {
    let chunk = tokio::time::timeout(common::WAIT, response.chunk())
        .await
        .expect("a stream event in time")
        .expect("the stream stays open")
        .expect("the stream stays open");
    String::from_utf8_lossy(&chunk).into_owned()
}

/// Reads `response` until its text holds `needle`.
async fn read_until(response: &mut reqwest::Response, seen: &mut String, needle: &str) {
    while !seen.contains(needle) {
        seen.push_str(&next_chunk(response).await);
    }
}

/// Hub a (active) and hub b (standby) on a fresh database; None without PostgreSQL.
async fn two_hubs(test: &str) -> Option<(RunningHub, RunningHub)> {
    let server = db::pg_server_or_skip(test)?;
    let url = db::fresh_database(&server);
    let a = gatehouse_hub::start(config(&url, "hub-a")).await.expect("hub a starts");
    let b = gatehouse_hub::start(config(&url, "hub-b")).await.expect("hub b starts");
    assert_eq!((a.role().name(), b.role().name()), ("active", "standby"));
    Some((a, b))
}

/// `GET path` on `hub` as the test admin: its JSON.
async fn get_json(hub: &RunningHub, path: &str) -> serde_json::Value {
    common::admin_client()
        .get(format!("http://{}{path}", hub.http_addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A console request with the test admin's bearer token.
fn as_admin<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", common::ADMIN_TOKEN).parse().unwrap(),
    );
    r
}

#[tokio::test]
async fn an_operator_on_either_hub_sees_and_changes_everything() {
    let Some((a, b)) = two_hubs("cluster::an_operator_on_either_hub_sees_and_changes_everything").await else {
        return;
    };
    eventually("the standby to be ready", || async { ready(&b).await.0 == 200 }).await;
    let (mut on_a, mut seen_a) = stream(&a).await;
    let (mut on_b, mut seen_b) = stream(&b).await;

    // A change made through the standby is applied by the active, answered as it answers.
    let asked = std::time::Instant::now();
    let made = common::admin_client()
        .post(format!("http://{}/api/v1/incidents", b.http_addr()))
        .json(&incident("Smoke in block 3"))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status().as_u16(), 201, "{:?}", made.text().await);
    let made: serde_json::Value = made.json().await.unwrap();
    let id = made["id"].as_i64().expect("the new incident's id");
    // Both hubs' streams carry it: a published it, b relayed it from the outbox.
    let opened = format!("\"id\":{id}");
    read_until(&mut on_a, &mut seen_a, &opened).await;
    read_until(&mut on_b, &mut seen_b, &opened).await;
    println!(
        "a change asked of the standby: on both hubs' streams {} ms later (forwarded, committed, relayed)",
        asked.elapsed().as_millis()
    );
    assert!(seen_b.contains("event: incident"), "{seen_b}");

    // A gateway on a raises an alarm; an operator on b sees it live and acknowledges it there.
    let mut link = Link::connect(&a, "gw-1", "estate-a", &["panel-1"]).await;
    link.send(vec![(
        "panel-1",
        "block 3",
        Body::Fire(gatehouse_proto::FireEvent {
            r#type: gatehouse_proto::FireEventType::FireAlarm as i32,
            zone: "3".into(),
            ..Default::default()
        }),
    )])
    .await;
    read_until(&mut on_b, &mut seen_b, "event: alarm").await;
    let alarms = get_json(&b, "/api/v1/alarms?state=active").await;
    let alarm = alarms[0]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("the fire alarm is listed on b: {alarms}"));
    let acked = common::admin_client()
        .post(format!("http://{}/api/v1/alarms/{alarm}/ack", b.http_addr()))
        .json(&json!({"operator": "li", "note": "on my way"}))
        .send()
        .await
        .unwrap();
    assert_eq!(acked.status().as_u16(), 200, "{:?}", acked.text().await);
    read_until(&mut on_a, &mut seen_a, "\"change\":\"acknowledged\"").await;
    read_until(&mut on_b, &mut seen_b, "\"change\":\"acknowledged\"").await;

    // A gRPC console on the standby: its actions are the active's too, refusals included.
    let mut console = CommandCentreClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", b.grpc_addr()))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let again = console
        .acknowledge_alarm(as_admin(AcknowledgeAlarmRequest {
            alarm_id: alarm,
            operator: String::new(),
            note: "twice".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition, "{again:?}");
    assert!(again.message().contains("already acknowledged"), "{again:?}");
    let shelve = as_admin(gatehouse_proto::ShelveAlarmRequest {
        alarm_id: alarm,
        minutes: 30,
        reason: "panel under repair".into(),
        operator: String::new(),
    });
    let shelved = console.shelve_alarm(shelve).await.expect("shelved through the standby");
    assert!(shelved.get_ref().shelved, "{shelved:?}");
    // Stored by the active hub: read back there.
    let listed = get_json(&a, "/api/v1/alarms").await;
    let stored = listed
        .as_array()
        .and_then(|l| l.iter().find(|x| x["id"] == alarm))
        .unwrap_or_else(|| panic!("alarm {alarm} listed on a: {listed}"));
    assert_eq!(stored["shelved"], true, "{stored}");

    let forwarded = common::metric_or_zero(&b, "gatehouse_hub_forwarded_requests_total{outcome=\"forwarded\"}").await;
    assert!(forwarded >= 3.0, "{forwarded}");
    assert!(common::metric_or_zero(&b, "gatehouse_hub_stream_relayed_total").await >= 3.0);
    drop((on_a, on_b));
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_graceful_stop_hands_the_lease_on_at_once() {
    let Some((a, b)) = two_hubs("cluster::a_graceful_stop_hands_the_lease_on_at_once").await else {
        return;
    };
    a.shutdown().await;
    // Released, not left to expire: b's next poll (within a second) takes it.
    eventually("hub b to take the released lease", || async {
        b.role().name() == "active"
    })
    .await;
    assert_eq!(ready(&b).await.0, 200);
    b.shutdown().await;
}

#[tokio::test]
async fn the_stream_outbox_is_written_with_each_commit_and_purged_after_five_minutes() {
    let Some(server) = db::pg_server_or_skip("cluster::the_stream_outbox_is_written_with_each_commit_and_purged")
    else {
        return;
    };
    let url = db::fresh_database(&server);
    let clock = gatehouse_hub::ManualClock::new(1_800_000_000_000);
    let hub = gatehouse_hub::start_with_clock(config(&url, "hub-a"), std::sync::Arc::new(clock.clone()))
        .await
        .expect("the hub starts");
    let rows = |sql: &'static str| {
        let url = url.clone();
        async move {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&mut conn).await.unwrap();
            n
        }
    };
    let made = common::admin_client()
        .post(format!("http://{}/api/v1/incidents", hub.http_addr()))
        .json(&incident("Smoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status().as_u16(), 201);
    // The commit that opened it wrote its stream events for the other hubs.
    let written = rows("SELECT COUNT(*) FROM stream_outbox WHERE events LIKE '%\"incident\"%'").await;
    assert!(written >= 1, "no outbox row for the new incident");
    clock.advance_s(4 * 60);
    hub.tick_now().await.unwrap();
    assert!(
        rows("SELECT COUNT(*) FROM stream_outbox").await >= written,
        "kept for five minutes"
    );
    clock.advance_s(2 * 60);
    hub.tick_now().await.unwrap();
    assert_eq!(
        rows("SELECT COUNT(*) FROM stream_outbox WHERE events LIKE '%\"incident\"%'").await,
        0,
        "purged after five minutes"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn a_standby_that_cannot_reach_the_active_says_so() {
    let Some(server) = db::pg_server_or_skip("cluster::a_standby_that_cannot_reach_the_active_says_so") else {
        return;
    };
    let url = db::fresh_database(&server);
    // Hub a advertises an address nothing listens on (a wrong `cluster.advertise_http`).
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let a = gatehouse_hub::start(config_with(
        &url,
        "hub-a",
        &format!("advertise_http = \"http://{nowhere}\""),
    ))
    .await
    .expect("hub a starts");
    let b = gatehouse_hub::start(config(&url, "hub-b")).await.expect("hub b starts");
    assert_eq!(b.role().name(), "standby");
    eventually("the standby to find the active unreachable", || async {
        let (status, body) = ready(&b).await;
        status == 503 && body.contains("active_hub") && body.contains(&nowhere.to_string())
    })
    .await;
    let refused = common::admin_client()
        .post(format!("http://{}/api/v1/incidents", b.http_addr()))
        .json(&incident("Nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    assert!(refused.text().await.unwrap().contains("did not answer"));
    assert!(common::metric_or_zero(&b, "gatehouse_hub_forwarded_requests_total{outcome=\"failed\"}").await >= 1.0);
    assert_eq!(
        get_json(&a, "/api/v1/incidents").await.as_array().map(Vec::len),
        Some(0)
    );
    b.shutdown().await;
    a.shutdown().await;
}
