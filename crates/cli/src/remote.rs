//! `ferry sync FLOW --server URL`: trigger a flow on a running `ferry serve` (a manual job in its queue)
//! and wait for the job's outcome, instead of running it in this process.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub struct Trigger<'a> {
    pub server: &'a str,
    pub token: &'a str,
    pub flow: &'a str,
    pub keys: Option<Vec<String>>,
    pub full: bool,
    pub wait: Option<Duration>,
    pub json: bool,
}

fn api_error(status: reqwest::StatusCode, body: &Value) -> String {
    let e = &body["error"];
    match (e["code"].as_str(), e["message"].as_str()) {
        (Some(code), Some(message)) => format!("{status} {code}: {message}"),
        _ => format!("{status}: {body}"),
    }
}

pub async fn sync(t: Trigger<'_>) -> Result<ExitCode> {
    let base = t.server.trim_end_matches('/');
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let url = format!("{base}/api/v1/flows/{}/trigger", t.flow);
    let mut body = json!({"full": t.full});
    if let Some(keys) = &t.keys {
        body["keys"] = json!(keys);
    }
    let response = client.post(&url).bearer_auth(t.token).json(&body).send().await.with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let answer: Value = response.json().await.with_context(|| format!("POST {url}: the answer is not JSON"))?;
    if !status.is_success() {
        bail!("POST {url}: {}", api_error(status, &answer));
    }
    let id = answer["job"]["id"].as_i64().context("the server's answer names no job id")?;
    let Some(wait) = t.wait else {
        out!("{}", if t.json { answer.to_string() } else { format!("queued job {id} for flow {} on {base}", t.flow) });
        return Ok(ExitCode::SUCCESS);
    };
    let deadline = Instant::now() + wait;
    let job_url = format!("{base}/api/v1/jobs/{id}");
    loop {
        let response = client.get(&job_url).bearer_auth(t.token).send().await.with_context(|| format!("GET {job_url}"))?;
        let status = response.status();
        let answer: Value = response.json().await.with_context(|| format!("GET {job_url}: the answer is not JSON"))?;
        if !status.is_success() {
            bail!("GET {job_url}: {}", api_error(status, &answer));
        }
        let job = &answer["job"];
        match job["status"].as_str() {
            Some("succeeded") | Some("failed") => {
                if t.json {
                    out!("{answer}");
                } else {
                    let run = job["run_id"].as_i64().map(|r| format!(", run #{r} (`ferry status {}` on the server)", t.flow)).unwrap_or_default();
                    let error = job["error"].as_str().map(|e| format!(": {e}")).unwrap_or_default();
                    out!("job {id} of flow {} {}{run}{error}", t.flow, job["status"].as_str().unwrap_or_default());
                }
                return Ok(if job["status"] == "succeeded" { ExitCode::SUCCESS } else { ExitCode::from(1) });
            }
            _ if Instant::now() >= deadline => {
                bail!("job {id} of flow {} is still {} after {:?}; follow it with GET {job_url}", t.flow, job["status"], wait)
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}
