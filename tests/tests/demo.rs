//! The one-command demo shows P1, P2 and P3 alarms from all three estates within 60 s.

mod common;

use std::{collections::HashSet, time::Duration};

use common::{alarms, eventually};
use gatehouse_sim::{demo, net::free_local_addr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shows_p1_p2_and_p3_alarms_from_all_three_estates_within_sixty_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = free_local_addr().expect("port");
    let run = tokio::spawn(demo::run(demo::DemoOptions {
        http_addr: http,
        data_dir: dir.path().to_path_buf(),
        run_for: Some(Duration::from_secs(75)),
    }));
    let base = format!("http://{http}");
    let seen = eventually(
        "P1, P2 and P3 alarms from three estates",
        Duration::from_secs(60),
        || async {
            let list = match reqwest::get(format!("{base}/api/v1/alarms")).await {
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
    run.abort();
}
