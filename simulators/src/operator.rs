//! A command-centre operator, scripted: a small client of the hub's HTTP API that
//! acknowledges alarms and walks incidents through the gate-house procedure. The demo's
//! storyline uses it; so can a test.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

#[derive(Clone)]
pub struct Operator {
    base: String,
    name: String,
    http: reqwest::Client,
}

impl Operator {
    /// `base` is the hub's HTTP root, e.g. `http://127.0.0.1:8080`.
    pub fn new(base: &str, name: &str) -> Self {
        Self {
            base: format!("{}/api/v1", base.trim_end_matches('/')),
            name: name.into(),
            // Without a token (no OS randomness) the hub answers 401, which each call reports.
            http: crate::credentials::client().unwrap_or_default(),
        }
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let resp = self.http.get(&url).send().await.with_context(|| format!("GET {url}"))?;
        Self::json(resp, &url).await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        Self::json(resp, &url).await
    }

    async fn json(resp: reqwest::Response, url: &str) -> anyhow::Result<Value> {
        let status = resp.status();
        let body: Value = resp.json().await.with_context(|| format!("{url}: body is not JSON"))?;
        if !status.is_success() {
            bail!("{url}: {status}: {body}");
        }
        Ok(body)
    }

    /// The open incident of `estate` (and `category`), waiting up to `within` for it.
    pub async fn open_incident(&self, estate: &str, category: &str, within: Duration) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let list = self
                .get(&format!("/incidents?estate={estate}&category={category}&open=true"))
                .await?;
            if let Some(first) = list.as_array().and_then(|l| l.first()) {
                return Ok(first.clone());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("no open {category} incident at {estate} after {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    pub async fn incident(&self, id: i64) -> anyhow::Result<Value> {
        self.get(&format!("/incidents/{id}")).await
    }

    /// Acknowledges every unacknowledged alarm of incident `id`.
    pub async fn acknowledge_incident(&self, id: i64, note: &str) -> anyhow::Result<()> {
        let detail = self.incident(id).await?;
        for alarm in detail["alarms"].as_array().into_iter().flatten() {
            if alarm["acknowledged"] == false
                && let Some(aid) = alarm["id"].as_i64()
            {
                self.post(
                    &format!("/alarms/{aid}/ack"),
                    json!({"operator": self.name, "note": note}),
                )
                .await?;
            }
        }
        Ok(())
    }

    pub async fn transition(&self, id: i64, to: &str, note: &str) -> anyhow::Result<Value> {
        self.post(
            &format!("/incidents/{id}/transition"),
            json!({"to": to, "note": note, "actor": self.name}),
        )
        .await
    }

    pub async fn false_alarm(&self, id: i64, reason: &str) -> anyhow::Result<Value> {
        self.post(
            &format!("/incidents/{id}/transition"),
            json!({"to": "false_alarm", "reason": reason, "note": reason, "actor": self.name}),
        )
        .await
    }

    /// Marks every step of the incident's procedure done, in order, with `note`.
    pub async fn complete_procedure(&self, id: i64, note: &str) -> anyhow::Result<usize> {
        let detail = self.incident(id).await?;
        let mut done = 0;
        for step in detail["procedure"].as_array().into_iter().flatten() {
            if step["status"] == "open"
                && let Some(sid) = step["step_id"].as_str()
            {
                self.post(
                    &format!("/incidents/{id}/steps/{sid}/done"),
                    json!({"actor": self.name, "note": note}),
                )
                .await?;
                done += 1;
            }
        }
        Ok(done)
    }
}

impl Operator {
    /// A guard calls in sick: an absence from now until further notice.
    pub async fn sick_call(&self, guard: &str) -> anyhow::Result<Value> {
        self.post(
            "/rota/absences",
            json!({"guard": guard, "reason": "sick", "operator": self.name}),
        )
        .await
    }

    /// The open coverage gaps of `estate`.
    pub async fn gaps(&self, estate: &str) -> anyhow::Result<Vec<Value>> {
        Ok(self
            .get(&format!("/rota/gaps?estate={estate}"))
            .await?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Solves the cover proposals for `gap` and accepts the recommended one; returns it.
    pub async fn cover_gap(&self, gap: &str) -> anyhow::Result<Value> {
        let solved = self.get(&format!("/rota/proposals?gap={gap}")).await?;
        let Some(best) = solved["proposals"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["recommended"] == true)
            .cloned()
        else {
            bail!("no recommended proposal for gap {gap}: {solved}");
        };
        let id = best["id"].as_str().context("proposal id")?;
        self.post(&format!("/rota/proposals/{id}/accept"), json!({"operator": self.name}))
            .await?;
        Ok(best)
    }

    pub async fn coverage(&self, estate: &str) -> anyhow::Result<Value> {
        self.get(&format!("/coverage?estate={estate}")).await
    }
}

/// One line per timeline entry of an incident, for printing.
pub fn timeline_lines(detail: &Value) -> Vec<String> {
    detail["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "    {}  {:<12} {}",
                t["at"].as_str().unwrap_or("").get(11..23).unwrap_or(""),
                t["kind"].as_str().unwrap_or(""),
                t["text"].as_str().unwrap_or("")
            )
        })
        .collect()
}
