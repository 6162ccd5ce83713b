//! The one-command demo shows P1, P2 and P3 alarms from all three estates within 60 s, and
//! the facility team's DingTalk group (the demo's facility inbox) gets the pump trip.

mod common;

use std::{collections::HashSet, time::Duration};

use common::{alarms, eventually};
use gatehouse_sim::{demo, net::free_local_addr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shows_p1_p2_and_p3_alarms_from_all_three_estates_within_sixty_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = free_local_addr().expect("port");
    let inbox = free_local_addr().expect("port");
    let run = tokio::spawn(demo::run(demo::DemoOptions {
        http_addr: http,
        data_dir: dir.path().to_path_buf(),
        run_for: Some(Duration::from_secs(120)),
        operator: demo::DemoOperator::Script,
        inbox_addr: Some(inbox),
    }));
    let base = format!("http://{http}");
    let seen = eventually(
        "P1, P2 and P3 alarms from three estates",
        Duration::from_secs(60),
        || async {
            let list = match common::authed_get(format!("{base}/api/v1/alarms")).await {
                Ok(r) => r.json::<Vec<serde_json::Value>>().await.ok()?,
                Err(_) => return None,
            };
            let pairs: HashSet<(String, String)> = list
                .iter()
                .map(|a| {
                    (
                        a["estate"].as_str().unwrap_or("").to_string(),
                        a["priority"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            let want = [("estate-a", "P2"), ("estate-b", "P3"), ("estate-c", "P1")];
            want.iter()
                .all(|(e, p)| pairs.contains(&(e.to_string(), p.to_string())))
                .then_some(list)
        },
    )
    .await;
    let p1 = seen.iter().find(|a| a["priority"] == "P1").expect("a P1");
    assert_eq!(p1["category"], "fire");
    assert_eq!(alarms(&base, "priority=P1&estate=estate-c").await.len(), 1);

    // The scripted operator walks the incidents through the procedure: the forced door is a
    // false alarm, the pump trip is handled on site and closed; both timelines show their
    // escalation.
    let incident = |estate: &'static str, state: &'static str| {
        let base = base.clone();
        async move {
            let list: Vec<serde_json::Value> = common::authed_get(format!("{base}/api/v1/incidents?estate={estate}"))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let found = list.into_iter().find(|i| i["state"] == state)?;
            let id = found["id"].as_i64()?;
            common::authed_get(format!("{base}/api/v1/incidents/{id}"))
                .await
                .ok()?
                .json::<serde_json::Value>()
                .await
                .ok()
        }
    };
    let door = eventually(
        "the forced door closed as a false alarm",
        Duration::from_secs(40),
        || incident("estate-a", "false_alarm"),
    )
    .await;
    let pump = eventually("the pump incident closed", Duration::from_secs(40), || {
        incident("estate-b", "closed")
    })
    .await;
    for detail in [&door, &pump] {
        let kinds: Vec<&str> = detail["timeline"]
            .as_array()
            .expect("timeline")
            .iter()
            .filter_map(|t| t["kind"].as_str())
            .collect();
        assert!(kinds.contains(&"escalation"), "{kinds:?}");
        assert!(kinds.contains(&"transition"), "{kinds:?}");
    }
    assert!(
        pump["procedure"]
            .as_array()
            .expect("procedure")
            .iter()
            .all(|s| s["status"] == "done"),
        "every step of the pump procedure was done before closing"
    );
    // The gate guard calls in sick: the empty post raises its alarm after the grace period,
    // the operator accepts the recommended cover, the cover badges in and the alarm clears.
    let unattended = eventually(
        "the gate post's alarm raised and cleared",
        Duration::from_secs(60),
        || {
            common::find_alarm(&base, |a| {
                a["estate"] == "estate-a"
                    && a["condition"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("post_unattended:"))
                    && a["active"] == false
            })
        },
    )
    .await;
    assert_eq!(unattended["priority"], "P2");

    // The facility team's robot message about the pump trip reached the demo's DingTalk
    // receiver (the URL it prints as `facility inbox: …`), correctly signed.
    let inbox_url = format!("http://{inbox}/");
    let received = eventually(
        "the pump trip in the facility inbox, signature verified",
        Duration::from_secs(30),
        || {
            let url = inbox_url.clone();
            async move {
                let v: serde_json::Value = reqwest::get(url).await.ok()?.json().await.ok()?;
                v["messages"]
                    .as_array()?
                    .iter()
                    .find(|m| {
                        let names_estate = ["Lakeview Court", "estate-b"].iter().any(|e| {
                            m["text"].as_str().is_some_and(|t| t.contains(e))
                                || m["title"].as_str().is_some_and(|t| t.contains(e))
                        });
                        m["channel"] == "dingtalk" && m["signature_verified"] == true && names_estate
                    })
                    .cloned()
            }
        },
    )
    .await;
    assert!(received["received_at"].is_string(), "{received}");
    run.abort();
}
