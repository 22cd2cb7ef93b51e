//! syncd against real emulated Ollama servers: changes, faults, health.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use syncd::config::PollSettings;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_added_to_one_instance_appears_and_goes() {
    let (a, b) = (emu("a", &["llama3"]).await, emu("b", &["llama3"]).await);
    let d = Daemon::start(&[&a, &b], fast()).await;
    let first = d.ready().await;
    assert!(has_model(&first, "llama3:latest"));
    assert_eq!(first.models[0].replicas.len(), 2);

    add_model(&b, "qwen2.5:0.5b").await;
    let map = d
        .wait_until("qwen2.5 on e1", |m| has_model(m, "qwen2.5:0.5b"))
        .await;
    let entry = map
        .model("registry.ollama.ai/library/qwen2.5:0.5b")
        .unwrap();
    assert_eq!(entry.name, "qwen2.5:0.5b");
    let holders: Vec<_> = entry.replicas.iter().map(|r| r.instance.as_str()).collect();
    assert_eq!(holders, ["e1"]);
    assert!(entry.replicas[0].modified_unix > 0);
    assert_eq!(map.instances[0].version.as_deref(), Some("0.9.7"));

    control(&b, "remove", json!({"name": "qwen2.5:0.5b"})).await;
    d.wait_until("qwen2.5 gone", |m| !has_model(m, "qwen2.5:0.5b"))
        .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_instance_goes_down_keeps_its_models_and_comes_back() {
    let (a, b) = (emu("a", &["llama3"]).await, emu("b", &["mistral"]).await);
    let d = Daemon::start(&[&a, &b], fast()).await;
    d.ready().await;

    fault(&b, json!({"kind": "refuse", "ms": 1000})).await;
    let (down, _) = d.wait_for("e1 down", PATIENCE, |m| !healthy(m, "e1")).await;
    assert!(healthy(&down, "e0"), "the other instance is unaffected");
    let mistral = down.model("registry.ollama.ai/library/mistral:latest");
    assert!(
        mistral.is_some(),
        "a down instance keeps its last known models"
    );
    let report = &d.fleet.reports()[1];
    assert!(report.consecutive_failures >= 2);
    let error = report.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("/api/"), "{error}");

    d.wait_for("e1 up again", PATIENCE, |m| healthy(m, "e1"))
        .await;
    assert!(d.fleet.reports()[1].last_error.is_none());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_instance_does_not_delay_the_others() {
    let (a, b) = (emu("a", &["llama3"]).await, emu("b", &["llama3"]).await);
    let slow = syncd::config::PollSettings {
        interval: Duration::from_millis(300),
        timeout: Duration::from_millis(290),
        ..fast()
    };
    let d = Daemon::start(&[&a, &b], slow).await;
    d.ready().await;
    fault(&b, json!({"kind": "hang"})).await;
    // Once a poll of the hung instance has timed out, change the healthy one:
    // it is seen while the hung instance's polls keep timing out.
    poll_until("a poll of e1 timed out", || {
        d.fleet.reports()[1].consecutive_failures >= 1
    })
    .await;
    add_model(&a, "phi3").await;
    let map = d.wait_until("phi3 on e0", |m| has_model(m, "phi3")).await;
    assert!(healthy(&map, "e0"));
    let (down, _) = d.wait_for("e1 down", PATIENCE, |m| !healthy(m, "e1")).await;
    let error = d.fleet.reports()[1].last_error.clone().unwrap_or_default();
    assert!(error.contains("no answer within"), "{error}");
    assert!(has_model(&down, "phi3"));
    fault(&b, json!({"kind": "none"})).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disagreeing_digests_are_marked_with_the_majority_as_canonical() {
    let good = digest('a');
    let odd = digest('b');
    let spec = format!("llama3@{good}");
    let (a, b, c) = (
        emu("a", &[&spec]).await,
        emu("b", &[&spec]).await,
        emu("c", &[&spec]).await,
    );
    let d = Daemon::start(&[&a, &b, &c], fast()).await;
    let first = d.ready().await;
    assert!(!first.models[0].digest_mismatch);

    control(&c, "digest", json!({"name": "llama3", "digest": odd})).await;
    let (map, _) = d
        .wait_for("mismatch", PATIENCE, |m| {
            m.models.first().is_some_and(|e| e.digest_mismatch)
        })
        .await;
    let entry = &map.models[0];
    assert_eq!(entry.canonical_digest, good);
    let odd_ones: Vec<_> = entry
        .replicas
        .iter()
        .filter(|r| r.digest != entry.canonical_digest)
        .map(|r| (r.instance.as_str(), r.digest.as_str()))
        .collect();
    assert_eq!(odd_ones, [("e2", odd.as_str())]);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loaded_models_are_reported_and_the_id_is_stable_while_nothing_changes() {
    let a = emu("a", &["llama3", "mistral"]).await;
    let d = Daemon::start(&[&a], fast()).await;
    d.ready().await;
    control(&a, "load", json!({"name": "mistral"})).await;
    let (map, _) = d
        .wait_for("mistral loaded", PATIENCE, |m| {
            m.model("registry.ollama.ai/library/mistral:latest")
                .is_some_and(|e| e.replicas[0].loaded.is_some())
        })
        .await;
    let loaded = map.models[1].replicas[0].loaded.clone().unwrap();
    assert!(
        loaded.size_vram > 0 && loaded.expires_unix > 0,
        "{loaded:?}"
    );

    let changes = d.fleet.map_changes();
    tokio::time::sleep(INTERVAL * 10).await;
    let now = d.fleet.current().unwrap();
    assert_eq!(now.map.id, map.id, "same fleet, same id");
    assert_eq!(d.fleet.map_changes(), changes, "nothing republished");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_or_a_huge_tags_body_marks_only_that_instance_down() {
    let (bad, huge, good) = (
        emu("bad", &["llama3"]).await,
        emu("huge", &["llama3"]).await,
        emu("good", &["llama3"]).await,
    );
    // A roomier timeout than fast(): the point is the size cap, and on a
    // busy 2-core machine the first MiB of 10 MB may take longer than 80 ms.
    let poll = PollSettings {
        interval: Duration::from_millis(500),
        timeout: Duration::from_millis(450),
        ..fast()
    };
    let d = Daemon::start(&[&bad, &huge, &good], poll).await;
    d.ready().await;
    fault(&bad, json!({"kind": "tags_invalid_json"})).await;
    fault(&huge, json!({"kind": "tags_huge", "bytes": 10_000_000})).await;
    let (map, _) = d
        .wait_for("both down", PATIENCE, |m| {
            !healthy(m, "e0") && !healthy(m, "e1")
        })
        .await;
    assert!(healthy(&map, "e2"));
    let reports = d.fleet.reports();
    let e0 = reports[0].last_error.clone().unwrap_or_default();
    let e1 = reports[1].last_error.clone().unwrap_or_default();
    assert!(e0.contains("/api/tags: invalid JSON"), "{e0}");
    assert!(
        e1.contains("/api/tags: response larger than the 1048576-byte cap"),
        "{e1}"
    );

    // The healthy instance's changes still arrive while the others fail.
    add_model(&good, "gemma2").await;
    d.wait_for("gemma2", PATIENCE, |m| has_model(m, "gemma2"))
        .await;
    d.stop().await;
}
