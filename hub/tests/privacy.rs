//! Residents' privacy over real HTTP, SSE and gRPC (issue 12 §4): an access event's card
//! number and an emergency call's flat come back masked or in clear per role
//! (`privacy::View::for_role`) from every endpoint that could carry them and on the live
//! stream, with `[[api_tokens]]` of each role; a guard's name likewise; and events past
//! `[retention] events_days` are purged by the writer's tick (ManualClock).

use std::path::Path;
use std::time::Duration;

use gatehouse_hub::{ManualClock, RunningHub};
use gatehouse_proto::command_centre_client::CommandCentreClient;
use gatehouse_proto::{
    AccessEvent, AccessResult, DeviceKind, IntercomEvent, IntercomEventType, WatchAlarmsRequest, alarm_update,
    event::Body,
};
use serde_json::Value;

mod common;
use common::{Link, WAIT};

const T0: i64 = 1_764_000_000_000;
const CARD: &str = "87654321";
const FLAT: &str = "B7-2903";
const GUARD_NAME: &str = "Wang Fang";
const ROLES: [&str; 6] = ["guard", "operator", "supervisor", "duty_manager", "facility", "admin"];

fn token(role: &str) -> String {
    format!("test-token-of-the-{role}")
}

/// Estate A, one gate post and its guard, and an API token per role.
fn rest(extra: &str) -> String {
    let mut s = String::from(common::ESTATE_A);
    s += "\n[[posts]]\nestate = \"estate-a\"\nid = \"a-gate\"\nkind = \"gate\"\narea = \"main gate\"\n";
    s += &format!(
        "\n[[guards]]\nid = \"g-wang\"\nname = \"{GUARD_NAME}\"\nhome_estate = \"estate-a\"\ncredentials = [\"card-wang\"]\n"
    );
    for role in ROLES {
        s += &format!(
            "\n[[api_tokens]]\nname = \"{role}-script\"\nrole = \"{role}\"\ntoken_sha256 = \"{}\"\n",
            gatehouse_hub::auth::token_sha256(&token(role))
        );
    }
    s + extra
}

async fn start(db: &Path, clock: &ManualClock, extra: &str) -> RunningHub {
    common::start_at(common::config(db, &rest(extra)), clock).await
}

async fn get_as(hub: &RunningHub, role: &str, path: &str) -> String {
    let r = reqwest::Client::new()
        .get(format!("http://{}{path}", hub.http_addr()))
        .bearer_auth(token(role))
        .send()
        .await
        .expect("HTTP answers");
    // A role that may not read an endpoint at all (403, `auth::policy`) sees nothing of it.
    let status = r.status().as_u16();
    assert!(status == 200 || status == 403, "GET {path} as {role}: {status}");
    if status == 403 {
        return String::new();
    }
    r.text().await.expect("a body")
}

/// The live stream as `role`, opened now (None: the role may not read it).
async fn stream_as(hub: &RunningHub, role: &str) -> Option<reqwest::Response> {
    let r = reqwest::Client::new()
        .get(format!("http://{}/api/v1/stream", hub.http_addr()))
        .bearer_auth(token(role))
        .send()
        .await
        .expect("the stream opens");
    if r.status().as_u16() == 403 {
        return None;
    }
    assert_eq!(r.status().as_u16(), 200);
    Some(r)
}

/// Reads the stream until it has carried an emergency call's alarm (its data names no
/// condition today: a client re-reads the alarm; masked all the same); the text read.
async fn read_until_emergency(mut r: reqwest::Response) -> String {
    let mut text = String::new();
    let _ = tokio::time::timeout(WAIT, async {
        while !text.contains("Intercom emergency call") {
            match r.chunk().await {
                Ok(Some(c)) => text.push_str(&String::from_utf8_lossy(&c)),
                _ => break,
            }
        }
    })
    .await;
    assert!(
        text.contains("Intercom emergency call"),
        "the emergency call's alarm on the stream: {text}"
    );
    text
}

fn sees_flats(role: &str) -> bool {
    matches!(role, "operator" | "supervisor" | "duty_manager" | "admin")
}

fn sees_names(role: &str) -> bool {
    matches!(role, "supervisor" | "duty_manager" | "admin")
}

#[tokio::test]
async fn card_numbers_flats_and_names_are_masked_per_role_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let hub = start(&dir.path().join("hub.db"), &clock, "").await;
    let mut streams = Vec::new();
    for role in ROLES {
        streams.push((role, stream_as(&hub, role).await));
    }
    let mut link = Link::connect_kinds(
        &hub,
        "gw-1",
        "estate-a",
        &[("door-1", DeviceKind::Door), ("intercom-1", DeviceKind::Intercom)],
    )
    .await;
    link.send(vec![
        (
            "door-1",
            "main gate",
            Body::Access(AccessEvent {
                door: "D1".into(),
                result: AccessResult::Denied as i32,
                credential: CARD.into(),
                reason: "expired".into(),
            }),
        ),
        (
            "intercom-1",
            "main gate",
            Body::Intercom(IntercomEvent {
                r#type: IntercomEventType::EmergencyCall as i32,
                from: FLAT.into(),
                ..Default::default()
            }),
        ),
    ])
    .await;

    // Find the alarm and its incident (as the admin, who sees everything).
    let alarms: Value = serde_json::from_str(&get_as(&hub, "admin", "/api/v1/alarms").await).unwrap();
    let alarm = alarms
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["condition"] == format!("emergency_call:{FLAT}"))
        .expect("the emergency call's alarm, its flat in clear for the admin")
        .clone();
    let alarm_id = alarm["id"].as_i64().unwrap();
    let incident = alarm["incident_id"].as_i64().expect("an incident");
    let paths = [
        "/api/v1/alarms".to_string(),
        format!("/api/v1/alarms?ids={alarm_id}"),
        format!("/api/v1/alarms/{alarm_id}/history"),
        "/api/v1/incidents".into(),
        format!("/api/v1/incidents/{incident}"),
        "/api/v1/kpi/alarms".into(),
        "/api/v1/notifications".into(),
        "/api/v1/commands".into(),
        "/api/v1/devices".into(),
        "/api/v1/estates".into(),
        "/api/v1/coverage".into(),
        "/api/v1/rota/guards".into(),
        "/api/v1/rota/assignments".into(),
    ];
    for role in ROLES {
        let mut all = String::new();
        for path in &paths {
            let body = get_as(&hub, role, path).await;
            // No endpoint carries a card number: it stays in the stored event.
            assert!(!body.contains(CARD), "{role} {path}: card number in an answer: {body}");
            if !sees_flats(role) {
                assert!(!body.contains(FLAT), "{role} {path}: flat in clear: {body}");
            }
            all += &body;
        }
        // Where the flat is (the alarm's condition: alarms, the incident's alarms, the KPI's
        // top ten), it is in clear or masked by the table.
        let shown = if sees_flats(role) { FLAT } else { "***" };
        let want = format!("\"emergency_call:{shown}\"");
        for path in [
            "/api/v1/alarms".to_string(),
            format!("/api/v1/incidents/{incident}"),
            "/api/v1/kpi/alarms".into(),
        ] {
            let body = get_as(&hub, role, &path).await;
            assert!(body.is_empty() || body.contains(&want), "{role} {path}: {want}");
        }
        let name = if sees_names(role) { GUARD_NAME } else { "W. F." };
        let guards = get_as(&hub, role, "/api/v1/rota/guards").await;
        if !guards.is_empty() {
            let guards: Value = serde_json::from_str(&guards).unwrap();
            assert_eq!(guards[0]["name"], name, "{role}: the guard's name");
        }
        if !sees_names(role) {
            assert!(!all.contains(GUARD_NAME), "{role}: a guard's name in clear");
        }
        // Acting returns the alarm masked too.
        for on in [true, false] {
            let r = reqwest::Client::new()
                .post(format!(
                    "http://{}/api/v1/alarms/{alarm_id}/out-of-service",
                    hub.http_addr()
                ))
                .bearer_auth(token(role))
                .json(&serde_json::json!({"out_of_service": on, "reason": "privacy test"}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            assert!(status == 200 || status == 403, "{role}: out of service {on}: {status}");
            if status == 403 {
                continue;
            }
            let body = r.text().await.unwrap();
            assert!(body.contains(&want), "{role}: an action's answer: {body}");
        }
    }

    for (role, stream) in streams {
        let Some(stream) = stream else { continue };
        let text = read_until_emergency(stream).await;
        assert!(!text.contains(CARD), "{role}: card number on the stream");
        if !sees_flats(role) {
            assert!(!text.contains(FLAT), "{role}: flat in clear on the stream: {text}");
        }
    }

    // CommandCentre: a console nobody vouched for is refused; an operator's watch carries the
    // flat as the operator's role may see it (in clear, to answer the call), never a card.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", hub.grpc_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut centre = CommandCentreClient::new(channel);
    let refused = centre
        .watch_alarms(WatchAlarmsRequest::default())
        .await
        .expect_err("no token, no watch");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let mut request = tonic::Request::new(WatchAlarmsRequest::default());
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token("operator")).parse().unwrap(),
    );
    let mut watch = centre.watch_alarms(request).await.unwrap().into_inner();
    let mut conditions = Vec::new();
    while let Ok(Ok(Some(u))) = tokio::time::timeout(Duration::from_secs(5), watch.message()).await {
        match u.update {
            Some(alarm_update::Update::Snapshot(a)) => conditions.push(a.condition),
            Some(alarm_update::Update::SnapshotComplete(_)) => break,
            _ => {}
        }
    }
    assert!(sees_flats("operator"));
    assert!(conditions.contains(&format!("emergency_call:{FLAT}")), "{conditions:?}");
    assert!(!conditions.iter().any(|c| c.contains(CARD)), "{conditions:?}");
    hub.shutdown().await;
}

/// Events stored, read through `events` (the view over the partitions on SQLite, the
/// partitioned parent on PostgreSQL).
async fn stored_events(url: &gatehouse_hub::config::DatabaseUrl) -> i64 {
    let pool = gatehouse_hub::store::open_read_only(url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

fn access(card: &str) -> Body {
    Body::Access(AccessEvent {
        door: "D1".into(),
        result: AccessResult::Granted as i32,
        credential: card.into(),
        reason: String::new(),
    })
}

#[tokio::test]
async fn events_past_their_retention_are_purged_a_partition_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let clock = ManualClock::new(T0);
    let config = common::config(&db, &rest("\n[retention]\nevents_days = 30\npartition_hours = 24\n"));
    let url = config.database_url().unwrap();
    let hub = common::start_at(config, &clock).await;
    let mut link = Link::connect_kinds(&hub, "gw-1", "estate-a", &[("door-1", DeviceKind::Door)]).await;
    link.send(
        (0..5)
            .map(|i| ("door-1", "main gate", access(&format!("1000000{i}"))))
            .collect(),
    )
    .await;
    clock.advance_s(20 * 86_400);
    link.send(vec![("door-1", "main gate", access("20000000"))]).await;
    hub.tick_now().await.unwrap();
    assert_eq!(stored_events(&url).await, 6, "nothing is past 30 days yet");
    assert_eq!(
        common::metric_or_zero(&hub, "gatehouse_hub_events_purged_total").await as u64,
        0
    );

    // 30 days after the first five's day (partition) ended, they are not yet all past
    // retention: the partition is kept whole.
    clock.advance_s(10 * 86_400);
    hub.tick_now().await.unwrap();
    assert_eq!(
        stored_events(&url).await,
        6,
        "a partition goes only once all of it is past"
    );

    // The first five are now over 31 days old, the last 12: one tick drops their partition.
    clock.advance_s(2 * 86_400);
    hub.tick_now().await.unwrap();
    assert_eq!(
        stored_events(&url).await,
        1,
        "the five old events purged, the recent one kept"
    );
    assert_eq!(
        common::metric_or_zero(&hub, "gatehouse_hub_events_purged_total").await as u64,
        5
    );
    link.send(vec![("door-1", "main gate", access("30000000"))]).await;
    assert_eq!(
        stored_events(&url).await,
        2,
        "ingest goes on into the current partition"
    );
    hub.shutdown().await;
}
