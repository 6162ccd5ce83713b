//! The board's read endpoints against a running hub fed over real gRPC (real SQLite, a
//! manual clock): `GET /devices` (registry, status, last seen, maintenance, last readings),
//! `GET /devices/{id}/points` (trends: window, thinning, filter, bounds) and
//! `GET /alarms?ids=`.

use std::path::Path;
use std::time::Duration;

use gatehouse_hub::{ManualClock, RunningHub};
use gatehouse_proto::event::Body;
use gatehouse_proto::{DeviceKind, DeviceStatus, PointReading, Quality};
use serde_json::{Value, json};

mod common;

use common::{Link, get, http};

const T0: i64 = 1_750_000_000_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;

async fn start(db: &Path) -> RunningHub {
    common::start_at(common::config(db, common::ESTATES_AB), &ManualClock::new(T0)).await
}

async fn connect_a(hub: &RunningHub) -> Link {
    Link::connect_kinds(
        hub,
        "gw-1",
        "estate-a",
        &[
            ("plc-1", DeviceKind::Modbus),
            ("door-1", DeviceKind::Door),
            ("panel-1", DeviceKind::FirePanel),
        ],
    )
    .await
}

fn point(name: &str, value: f64, unit: &str, quality: Quality) -> Body {
    Body::Point(PointReading {
        point: name.into(),
        value,
        unit: unit.into(),
        quality: quality as i32,
        refresh: false,
    })
}

fn status(online: bool) -> Body {
    Body::Status(DeviceStatus {
        online,
        reason: String::new(),
    })
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn by_device<'a>(list: &'a Value, device: &str) -> &'a Value {
    list.as_array()
        .expect("an array")
        .iter()
        .find(|d| d["device"] == device)
        .unwrap_or_else(|| panic!("{device} in {list}"))
}

#[tokio::test]
async fn devices_show_registry_status_last_seen_maintenance_and_last_readings() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db")).await;
    let mut a = connect_a(&hub).await;
    let b = Link::connect_kinds(&hub, "gw-2", "estate-b", &[("plc-9", DeviceKind::Modbus)]).await;

    // Known from the Hello alone: nothing heard yet.
    let list = get(&hub, "/api/v1/devices?estate=estate-a").await;
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    let plc = by_device(&list, "plc-1");
    assert_eq!(plc["estate"], "estate-a");
    assert_eq!(plc["kind"], "modbus");
    assert_eq!(plc["area"], "main gate");
    assert_eq!(plc["gateway"], "gw-1");
    assert_eq!(plc["gateway_connected"], true);
    assert_eq!(plc["online"], Value::Null);
    assert_eq!(plc["last_seen"], Value::Null);
    assert_eq!(plc["maintenance"], false);
    assert_eq!(plc["points"], json!({}));
    assert_eq!(plc["actions"], json!(["write"]), "the commands a Modbus device takes");
    assert_eq!(
        by_device(&list, "door-1")["actions"],
        json!(["unlock", "lock", "release"])
    );

    a.send_at(vec![
        (
            "plc-1",
            "pump room",
            T0 - 3 * HOUR,
            point("pressure", 2.0, "bar", Quality::Good),
        ),
        (
            "plc-1",
            "pump room",
            T0 - 2 * HOUR,
            point("level", 40.0, "%", Quality::Uncertain),
        ),
        (
            "plc-1",
            "pump room",
            T0 - HOUR,
            point("pressure", 2.5, "bar", Quality::Good),
        ),
        ("plc-1", "pump room", T0 - 30 * MIN, status(false)),
        ("plc-1", "pump room", T0 - 10 * MIN, status(true)),
        ("door-1", "main gate", T0 - 5 * MIN, status(false)),
    ])
    .await;
    let (code, body) = http(
        &hub,
        "POST",
        "/api/v1/devices/door-1/maintenance",
        Some(json!({"estate": "estate-a", "reason": "new lock", "minutes": 60})),
    )
    .await;
    assert_eq!(code, 200, "{body}");

    let list = get(&hub, "/api/v1/devices?estate=estate-a").await;
    let plc = by_device(&list, "plc-1");
    assert_eq!(plc["online"], true, "the newest status wins: {plc}");
    assert_eq!(plc["last_seen"], rfc3339(T0 - 10 * MIN));
    assert_eq!(
        plc["points"],
        json!({
            "pressure": {"value": 2.5, "unit": "bar", "quality": "good", "at": rfc3339(T0 - HOUR)},
            "level": {"value": 40.0, "unit": "%", "quality": "uncertain", "at": rfc3339(T0 - 2 * HOUR)},
        })
    );
    let door = by_device(&list, "door-1");
    assert_eq!(door["online"], false);
    assert_eq!(door["maintenance"], true);
    assert_eq!(door["points"], json!({}));
    let panel = by_device(&list, "panel-1");
    assert_eq!(panel["online"], Value::Null);
    assert_eq!(panel["last_seen"], Value::Null);
    assert_eq!(panel["maintenance"], false);

    // Every estate without the filter; the filter is checked.
    let all = get(&hub, "/api/v1/devices").await;
    assert_eq!(all.as_array().unwrap().len(), 4, "{all}");
    assert_eq!(by_device(&all, "plc-9")["estate"], "estate-b");
    for bad in ["/api/v1/devices?estate=nope", "/api/v1/devices?colour=red"] {
        let (code, body) = http(&hub, "GET", bad, None).await;
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(body["error"].is_string());
    }

    // A gateway that goes away: its devices stay, shown disconnected.
    drop(b);
    let until = tokio::time::Instant::now() + common::WAIT;
    loop {
        let list = get(&hub, "/api/v1/devices?estate=estate-b").await;
        if by_device(&list, "plc-9")["gateway_connected"] == false {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "gw-2 never shown disconnected: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn points_are_windowed_thinned_to_720_oldest_first_and_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db")).await;
    let mut a = connect_a(&hub).await;

    // 2,000 flow readings over the last two hours (one every 3.6 s), ten pressure readings,
    // and one flow reading ten hours ago (outside the default six).
    let flow: Vec<(i64, f64)> = (0..2_000)
        .map(|i| (T0 - 2 * HOUR + 3_600 * i + 3_600, i as f64))
        .collect();
    for chunk in flow.chunks(500) {
        a.send_at(
            chunk
                .iter()
                .map(|&(at, v)| ("plc-1", "pump room", at, point("flow", v, "m3/h", Quality::Good)))
                .collect(),
        )
        .await;
    }
    let pressure: Vec<(i64, f64)> = (0..10)
        .map(|i| (T0 - 100 * MIN + i * 10 * MIN, 2.0 + i as f64 / 10.0))
        .collect();
    a.send_at(
        pressure
            .iter()
            .map(|&(at, v)| ("plc-1", "pump room", at, point("pressure", v, "bar", Quality::Good)))
            .collect(),
    )
    .await;
    a.send_at(vec![(
        "plc-1",
        "pump room",
        T0 - 10 * HOUR,
        point("flow", -1.0, "m3/h", Quality::Good),
    )])
    .await;
    // Other devices' readings stay out.
    a.send_at(vec![(
        "door-1",
        "main gate",
        T0 - MIN,
        point("flow", 99.0, "m3/h", Quality::Good),
    )])
    .await;

    let r = get(&hub, "/api/v1/devices/plc-1/points?estate=estate-a").await;
    assert_eq!(r["estate"], "estate-a");
    assert_eq!(r["device"], "plc-1");
    assert_eq!(r["from"], rfc3339(T0 - 6 * HOUR));
    assert_eq!(r["to"], rfc3339(T0));
    assert_eq!(r["truncated"], false);
    let points = r["points"].as_object().unwrap();
    assert_eq!(points.len(), 2, "{:?}", points.keys());

    let samples = |r: &Value, p: &str| -> Vec<(f64, f64)> {
        r["points"][p]["samples"]
            .as_array()
            .unwrap_or_else(|| panic!("{p} in {r}"))
            .iter()
            .map(|s| (s[0].as_f64().unwrap(), s[1].as_f64().unwrap()))
            .collect()
    };
    let f = samples(&r, "flow");
    assert_eq!(r["points"]["flow"]["unit"], "m3/h");
    assert!(f.len() <= 720 && f.len() >= 200, "thinned to at most 720: {}", f.len());
    assert!(f.windows(2).all(|w| w[0].0 < w[1].0), "oldest first");
    assert!(
        f.iter().all(|s| s.1 >= 0.0),
        "the ten-hour-old reading is outside six hours"
    );
    // Each sample is a reading as sent (the last of its bucket); the newest survives.
    for (at, v) in &f {
        let sent = flow[*v as usize];
        assert_eq!((sent.0 as f64 / 1000.0, sent.1), (*at, *v));
    }
    assert_eq!(*f.last().unwrap(), (flow[1_999].0 as f64 / 1000.0, 1_999.0));

    // Under the cap: every reading, exactly.
    let p = samples(&r, "pressure");
    let want: Vec<(f64, f64)> = pressure.iter().map(|&(at, v)| (at as f64 / 1000.0, v)).collect();
    assert_eq!(p, want);

    // A longer window reaches the old reading; a point filter keeps one series.
    let r12 = get(&hub, "/api/v1/devices/plc-1/points?estate=estate-a&hours=12").await;
    assert_eq!(samples(&r12, "flow")[0], ((T0 - 10 * HOUR) as f64 / 1000.0, -1.0));
    let only = get(
        &hub,
        "/api/v1/devices/plc-1/points?estate=estate-a&hours=1&point=pressure",
    )
    .await;
    assert_eq!(only["points"].as_object().unwrap().len(), 1, "{only}");
    assert_eq!(
        samples(&only, "pressure").len(),
        6,
        "the last hour's pressure readings: {only}"
    );

    for (path, code) in [
        ("/api/v1/devices/plc-1/points", 400),
        ("/api/v1/devices/plc-1/points?estate=nope", 400),
        ("/api/v1/devices/plc-1/points?estate=estate-a&hours=0", 400),
        ("/api/v1/devices/plc-1/points?estate=estate-a&hours=169", 400),
        ("/api/v1/devices/plc-1/points?estate=estate-a&hours=x", 400),
        ("/api/v1/devices/plc-1/points?estate=estate-a&bogus=1", 400),
        ("/api/v1/devices/ghost/points?estate=estate-a", 404),
        ("/api/v1/devices/plc-1/points?estate=estate-b", 404),
    ] {
        let (got, body) = http(&hub, "GET", path, None).await;
        assert_eq!(got, code, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let ok = get(&hub, "/api/v1/devices/plc-1/points?estate=estate-a&hours=168").await;
    assert_eq!(ok["from"], rfc3339(T0 - 168 * HOUR));
    hub.shutdown().await;
}

#[tokio::test]
async fn alarms_by_ids_in_any_state_with_the_other_filters_still_applied() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("hub.db")).await;
    let mut a = connect_a(&hub).await;
    // Three offline alarms, then one device comes back (its alarm clears).
    a.send_at(vec![
        ("plc-1", "pump room", T0 - 3 * MIN, status(false)),
        ("door-1", "main gate", T0 - 3 * MIN, status(false)),
        ("panel-1", "main gate", T0 - 3 * MIN, status(false)),
    ])
    .await;
    a.send_at(vec![("plc-1", "pump room", T0 - MIN, status(true))]).await;

    let all = get(&hub, "/api/v1/alarms").await;
    let id_of = |device: &str| -> i64 {
        all.as_array()
            .unwrap()
            .iter()
            .find(|x| x["device"] == device)
            .unwrap_or_else(|| panic!("{device} alarm in {all}"))["id"]
            .as_i64()
            .unwrap()
    };
    let (plc, door, panel) = (id_of("plc-1"), id_of("door-1"), id_of("panel-1"));
    let ids_of = |v: &Value| -> Vec<i64> {
        let mut ids: Vec<i64> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].as_i64().unwrap())
            .collect();
        ids.sort_unstable();
        ids
    };
    let mut want = vec![plc, door];
    want.sort_unstable();
    assert_eq!(
        ids_of(&get(&hub, &format!("/api/v1/alarms?ids={plc},{door}")).await),
        want
    );
    // Any state: the cleared one too; with a state filter, only the matching ones.
    assert_eq!(
        ids_of(&get(&hub, &format!("/api/v1/alarms?ids={plc}")).await),
        vec![plc]
    );
    assert_eq!(
        ids_of(&get(&hub, &format!("/api/v1/alarms?ids={plc},{door},{panel}&state=active")).await),
        {
            let mut v = vec![door, panel];
            v.sort_unstable();
            v
        }
    );
    assert_eq!(ids_of(&get(&hub, "/api/v1/alarms?ids=999999").await), Vec::<i64>::new());
    assert_eq!(
        ids_of(&get(&hub, &format!("/api/v1/alarms?ids=%20{door}%20")).await),
        vec![door]
    );
    assert_eq!(
        ids_of(&get(&hub, "/api/v1/alarms?ids=").await).len(),
        3,
        "empty: no filter"
    );

    let five_hundred: Vec<String> = (1..=500).map(|i| i.to_string()).collect();
    assert_eq!(
        ids_of(&get(&hub, &format!("/api/v1/alarms?ids={}", five_hundred.join(","))).await).len(),
        3
    );
    let too_many: Vec<String> = (1..=501).map(|i| i.to_string()).collect();
    for bad in ["x", "1,,2", "0", "-1", "1;2", too_many.join(",").as_str()] {
        let (code, body) = http(&hub, "GET", &format!("/api/v1/alarms?ids={bad}"), None).await;
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(body["error"].is_string());
    }
    hub.shutdown().await;
}
