//! The storyline for a person at the board (`--operator board`): the devices act up as in the
//! scripted story, and then nothing is done for the operator. What a gate house would do on
//! its own follows the operator's decisions: the technician resets the duty pump once the
//! incident is handled on site (unless the operator already reset it from the board), the
//! fire brigade clears the scene and the panel is reset once the fire incident is on site,
//! and the cover guard badges in once the operator has covered the empty gate post.

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio::time::Instant;

use super::{GATE_GUARDS, guard, opening_beats, print_timeline, say};
use crate::{operator::Operator, scenario::SimEstate};

/// How long the operator has for each part before the story moves on without them.
const PATIENCE: Duration = Duration::from_secs(3600);
const POLL: Duration = Duration::from_millis(500);

pub(super) async fn story(estates: &[SimEstate], op: &Operator, base: &str) -> anyhow::Result<()> {
    let [a, b, c, ..] = estates else { return Ok(()) };
    opening_beats(a, b, c, Instant::now()).await?;
    say(&format!(
        "over to you at {base}/ — three incidents to work through the gate-house procedure \
         (acknowledge, assess, report, on site, record, close); a guard will call in sick"
    ));
    let door = async {
        let id = incident_id(op, &a.spec.id, "intrusion").await?;
        until_closed(op, id, "forced door").await
    };
    let pump = async {
        let id = incident_id(op, &b.spec.id, "pump_flooding").await?;
        until_state(op, id, &["on_site", "recorded", "closed", "false_alarm"]).await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        if b.pump_room.pump(1).is_some_and(|p| p.fault) {
            say(&format!("{} — the technician resets the duty pump", b.spec.name));
            b.pump_room.reset();
        }
        until_closed(op, id, "pump trip").await
    };
    let fire = async {
        let id = incident_id(op, &c.spec.id, "fire").await?;
        until_state(op, id, &["on_site", "recorded", "closed", "false_alarm"]).await?;
        tokio::time::sleep(Duration::from_secs(10)).await;
        say(&format!(
            "{} — the fire brigade clears the scene; the panel is reset",
            c.spec.name
        ));
        c.fire_panel.reset().await?;
        until_closed(op, id, "fire").await
    };
    let sick = async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        say(&format!(
            "{} — {} ({}) phones the monitoring room: sick, leaving the main-gate post; record \
             the absence on the coverage board, then cover the post when its gap is alarmed",
            a.spec.name,
            GATE_GUARDS[0].1,
            guard(0, &a.spec.id)
        ));
        let gap = wait_for(move || async move {
            let gaps = op.gaps(&a.spec.id).await?;
            Ok(gaps.into_iter().find(|g| g["alarmed"] == true))
        })
        .await
        .context("the empty gate post was never alarmed")?;
        let gap_id = gap["id"].as_str().context("gap id")?.to_string();
        // The cover the operator accepted is on its way (or the gap closed another way).
        let gap_id = &gap_id;
        let cover = wait_for(move || async move {
            let gaps = op.gaps(&a.spec.id).await?;
            Ok(match gaps.iter().find(|g| g["id"].as_str() == Some(gap_id.as_str())) {
                None => Some(None),
                Some(g) => g["en_route"]
                    .as_array()
                    .and_then(|r| r.first())
                    .and_then(|v| v.as_str())
                    .map(|guard| Some(guard.to_string())),
            })
        })
        .await
        .context("the gate post was never covered")?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        // A guard's badge is their id (the demo's roster).
        let cover = cover.unwrap_or_else(|| guard(1, &a.spec.id));
        say(&format!("{} — {cover} badges in at the main gate", a.spec.name));
        a.door.badge("main-gate-east", &cover).await?;
        anyhow::Ok(())
    };
    tokio::try_join!(door, pump, fire, sick)?;
    say("storyline complete; background traffic continues until Ctrl-C");
    Ok(())
}

/// Polls `probe` until it yields a value, for at most [`PATIENCE`].
async fn wait_for<T, F, Fut>(mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = probe().await? {
            return Ok(v);
        }
        anyhow::ensure!(Instant::now() < deadline, "gave up after {PATIENCE:?}");
        tokio::time::sleep(POLL).await;
    }
}

async fn incident_id(op: &Operator, estate: &str, category: &str) -> anyhow::Result<i64> {
    let inc = op.open_incident(estate, category, Duration::from_secs(30)).await?;
    inc["id"].as_i64().context("incident id")
}

async fn until_state(op: &Operator, id: i64, states: &[&str]) -> anyhow::Result<Value> {
    wait_for(move || async move {
        let d = op.incident(id).await?;
        Ok(states.contains(&d["state"].as_str().unwrap_or("")).then_some(d))
    })
    .await
    .with_context(|| format!("incident {id} never reached {states:?}"))
}

async fn until_closed(op: &Operator, id: i64, what: &str) -> anyhow::Result<()> {
    until_state(op, id, &["closed", "false_alarm"]).await?;
    print_timeline(op, id, what).await
}
