//! `POST /v1/sync` on the daemon (NDJSON events, dry run, auth, bad
//! placement), `syncd sync --url`, and `run --reconcile` restoring a
//! wiped instance.

// Test helpers: a failed unwrap here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use syncd::SyncSettings;

async fn post_sync(
    url: &str,
    body: Value,
    token: Option<&str>,
) -> (StatusCode, String, Vec<Value>) {
    let mut req = reqwest::Client::new()
        .post(format!("{url}/v1/sync"))
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    let lines = if status.is_success() {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    } else {
        vec![serde_json::from_str(&text).unwrap()]
    };
    (status, ct, lines)
}

#[tokio::test]
async fn sync_streams_plan_progress_results_and_summary() {
    let (a, b) = (emu("a", &["m"]).await, emu("b", &[]).await);
    let d = Daemon::syncing(&[&a, &b], SyncSettings::default()).await;

    let (status, ct, events) = post_sync(&d.url, json!({"dry_run": true}), None).await;
    assert_eq!(
        (status, ct.as_str()),
        (StatusCode::OK, "application/x-ndjson")
    );
    assert_eq!(events.len(), 1, "a dry run sends the plan only: {events:?}");
    assert_eq!(events[0]["event"], "plan");
    assert_eq!(events[0]["actions"][0]["instance"], "e1");
    assert_eq!(events[0]["actions"][0]["reason"], "missing");

    let (status, _, events) = post_sync(&d.url, json!({}), None).await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"plan"));
    assert!(kinds.contains(&"progress"), "{kinds:?}");
    assert_eq!(&kinds[kinds.len() - 2..], ["result", "summary"]);
    let summary = events.last().unwrap();
    assert_eq!(
        (summary["succeeded"].as_u64(), summary["failed"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(holdings(&b).await, holdings(&a).await);

    // Once the pollers see it, there is nothing left to do.
    d.wait_until("m on e1", |m| held_by(m, "e1") == ["m:latest"])
        .await;
    let (_, _, events) = post_sync(&d.url, json!({"dry_run": true}), None).await;
    assert_eq!(events[0]["actions"], json!([]));
    d.stop().await;
}

#[tokio::test]
async fn token_and_placement_are_checked() {
    let a = emu("a", &["m"]).await;
    let settings = SyncSettings {
        api_token: Some("s3cret".into()),
        ..SyncSettings::default()
    };
    let d = Daemon::syncing(&[&a], settings).await;
    let (status, _, body) = post_sync(&d.url, json!({}), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body[0]["error"].as_str().unwrap().contains("bearer token"),
        "{body:?}"
    );
    let (status, _, _) = post_sync(&d.url, json!({}), Some("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let bad = json!({"placement": {"model": [{"name": "m", "instances": ["nope"]}]}});
    let (status, _, body) = post_sync(&d.url, bad, Some("s3cret")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error = body[0]["error"].as_str().unwrap();
    assert!(
        error.contains("model[0]") && error.contains("unknown instance"),
        "{error}"
    );
    let (status, _, body) = post_sync(&d.url, json!({"dry_run": "yes"}), Some("s3cret")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
    let (status, _, events) = post_sync(&d.url, json!({}), Some("s3cret")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events.last().unwrap()["event"], "summary");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_command_through_the_daemon() {
    let (a, b) = (emu("a", &["m"]).await, emu("b", &[]).await);
    let settings = SyncSettings {
        api_token: Some("s3cret".into()),
        ..SyncSettings::default()
    };
    let d = Daemon::syncing(&[&a, &b], settings).await;
    let url = d.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_syncd"))
            .args(["sync", "--url", &url, "--progress", "plain"])
            .env("SYNCD_API_TOKEN", "s3cret")
            .env_remove("SYNCD_PLACEMENT")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("e1  m:latest  done"), "{stdout}");
    assert!(stdout.contains("1 succeeded, 0 failed"), "{stdout}");
    assert_eq!(holdings(&b).await, holdings(&a).await);
    d.stop().await;
}

#[tokio::test]
async fn reconcile_restores_a_wiped_instance() {
    let a = emu("a", &["m", "n"]).await;
    let b = emu("b", &[]).await;
    let settings = SyncSettings {
        reconcile: Some(Duration::from_secs(1)),
        ..SyncSettings::default()
    };
    let d = Daemon::syncing(&[&a, &b], settings).await;
    let both = |m: &model_map::ModelMap| held_by(m, "e1") == ["m:latest", "n:latest"];
    d.wait_until("e1 synced by reconcile", both).await;
    let changes = d.fleet.map_changes();
    control(&b, "wipe", json!({})).await;
    assert!(holdings(&b).await.is_empty());
    // Restored means a map without them, then one with them again.
    let fleet = d.fleet.clone();
    d.wait_until("e1 restored", |m| {
        both(m) && fleet.map_changes() >= changes + 2
    })
    .await;
    assert_eq!(holdings(&b).await, holdings(&a).await);
    d.stop().await;
}
