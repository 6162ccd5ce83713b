//! The storyline with a scripted operator: every operator action goes through the hub's
//! HTTP API from [`Operator`], at fixed times, so the demo (and its test) runs unattended.

use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

use super::{GATE_GUARDS, guard, opening_beats, print_timeline, say};
use crate::{
    inbox::{Inbox, InboxMessage},
    operator::Operator,
    scenario::SimEstate,
};

/// How long the operator waits for the facility team's chat message before acknowledging
/// the pump trip without it. The hub sends it when the incident opens, some 20 s earlier.
const FACILITY_WAIT: Duration = Duration::from_secs(10);

pub(super) async fn script(estates: &[SimEstate], op: &Operator, inbox: &Inbox) -> anyhow::Result<()> {
    let [a, b, c, ..] = estates else { return Ok(()) };
    let start = Instant::now();
    let at = |s: u64| tokio::time::sleep_until(start + Duration::from_secs(s));
    let wait = Duration::from_secs(20);
    let (wang, zhao) = (guard(0, &a.spec.id), guard(1, &a.spec.id));
    opening_beats(a, b, c, start).await?;

    // The forced door: the patrol post checks CCTV — a resident's child pushed the door.
    at(24).await;
    let door = op.open_incident(&a.spec.id, "intrusion", wait).await?;
    let door_id = door["id"].as_i64().context("incident id")?;
    say(&format!(
        "operator — acknowledges incident {door_id} (forced door) and assesses it on CCTV"
    ));
    op.acknowledge_incident(door_id, "patrol post checking CCTV").await?;
    op.transition(door_id, "assessed", "CCTV: a resident's child pushed the door open")
        .await?;
    op.false_alarm(door_id, "resident's child pushed the door; door closed and checked")
        .await?;
    print_timeline(op, door_id, "forced door").await?;

    // The pump: facility incident; the standby pump has taken over; the duty pump is reset.
    at(32).await;
    let pump = op.open_incident(&b.spec.id, "pump_flooding", wait).await?;
    let pump_id = pump["id"].as_i64().context("incident id")?;
    // Acknowledging ends the facility team's escalation step: the story shows the team's
    // chat message first.
    let about_pump = |m: &InboxMessage| {
        [&b.spec.name, &b.spec.id, &format!("/incidents/{pump_id}")]
            .iter()
            .any(|s| m.text.contains(s.as_str()) || m.title.as_deref().is_some_and(|t| t.contains(s.as_str())))
    };
    match inbox.wait_for(FACILITY_WAIT, about_pump).await {
        Some(m) if m.signature_verified => say(&format!(
            "facility team — the pump trip is in their DingTalk group: {}",
            m.first_line()
        )),
        Some(m) => say(&format!(
            "facility team — a pump-trip message arrived but its signature did NOT verify ({}): {}",
            m.refused.as_deref().unwrap_or("?"),
            m.first_line()
        )),
        None => say(&format!(
            "facility team — NO pump-trip message reached the facility inbox within {} s of the \
             operator's turn (see the hub's log and incident {pump_id}'s notifications); \
             acknowledging anyway",
            FACILITY_WAIT.as_secs()
        )),
    }
    say(&format!(
        "operator — acknowledges incident {pump_id} (pump trip); facility team on the way"
    ));
    op.acknowledge_incident(pump_id, "facility team informed").await?;
    op.transition(
        pump_id,
        "assessed",
        "duty pump tripped; standby running; pressure recovering",
    )
    .await?;
    op.transition(pump_id, "reported", "reported to the estate supervisor")
        .await?;
    op.transition(pump_id, "on_site", "technician in the pump room").await?;
    say(&format!("{} — technician resets the duty pump", b.spec.name));
    b.pump_room.reset();
    op.complete_procedure(pump_id, "done by the technician").await?;
    let fire = op.open_incident(&c.spec.id, "fire", wait).await?;
    let fire_id = fire["id"].as_i64().context("incident id")?;
    at(44).await;
    op.transition(pump_id, "recorded", "repair ticket raised for the duty pump")
        .await?;
    op.transition(pump_id, "closed", "pump room back to normal").await?;
    print_timeline(op, pump_id, "pump trip").await?;

    // The gate post: its guard calls in sick; after the grace period the empty post is an
    // alarm; the operator accepts the recommended cover and the cover badges in.
    at(48).await;
    say(&format!(
        "{} — {} calls in sick and leaves the main-gate post",
        a.spec.name, GATE_GUARDS[0].1
    ));
    op.sick_call(&wang).await?;
    let alarmed_gap = async {
        loop {
            let gaps = op.gaps(&a.spec.id).await?;
            if let Some(g) = gaps.into_iter().find(|g| g["alarmed"] == true) {
                return anyhow::Ok(g);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let gap = tokio::time::timeout(Duration::from_secs(60), alarmed_gap)
        .await
        .context("the empty gate post raised no alarm within 60 s")??;
    let gap_id = gap["id"].as_str().context("gap id")?.to_string();
    let cover = op.cover_gap(&gap_id).await?;
    say(&format!(
        "operator — accepts cover proposal {} (score {}): {} takes the post",
        cover["id"].as_str().unwrap_or("?"),
        cover["score"],
        GATE_GUARDS[1].1
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    say(&format!(
        "{} — {} badges in at the main gate",
        a.spec.name, GATE_GUARDS[1].1
    ));
    a.door.badge("main-gate-east", &zhao).await?;

    // The fire: left unacknowledged long enough for the duty manager escalation at 60 s.
    at(80).await;
    say(&format!(
        "operator — acknowledges fire incident {fire_id} and confirms location and extent"
    ));
    op.acknowledge_incident(fire_id, "monitoring room confirms on CCTV")
        .await?;
    op.transition(
        fire_id,
        "assessed",
        "real: smoke in Block 3 12F corridor, no flames seen",
    )
    .await?;
    op.transition(
        fire_id,
        "reported",
        "supervisor and management centre informed; 119 called",
    )
    .await?;
    op.transition(
        fire_id,
        "on_site",
        "guards on 12F; one meets the fire brigade at the gate",
    )
    .await?;
    op.complete_procedure(fire_id, "done").await?;
    at(95).await;
    say(&format!(
        "{} — the fire brigade clears the scene; the panel is reset",
        c.spec.name
    ));
    c.fire_panel.reset().await?;
    at(100).await;
    op.transition(fire_id, "recorded", "burnt cooking in 1203; detector cleaned")
        .await?;
    op.transition(fire_id, "closed", "all residents accounted for").await?;
    print_timeline(op, fire_id, "fire").await?;
    say("storyline complete; background traffic continues until Ctrl-C");
    Ok(())
}
