//! `sync` against emulators, through the library: union sync, digest
//! repair, placement with replicas and warm models, one instance failing
//! mid-pull, idempotence.

mod common;

use common::*;
use serde_json::json;
use syncd::sync::plan::{ActionKind, Reason};
use syncd::sync::Event;

#[tokio::test]
async fn union_sync_then_nothing_to_do() {
    let (a, b, c) = (
        emu("a", &["m", "n"]).await,
        emu("b", &["n"]).await,
        emu("c", &[]).await,
    );
    let config = config(&[&a, &b, &c]);
    let (summary, events) = sync_once(&config, None).await;
    assert!(summary.ok(), "{summary:?}");
    assert_eq!(summary.actions, 3, "m on b and c, n on c: {summary:?}");
    let want = holdings(&a).await;
    assert_eq!(want.len(), 2);
    assert_eq!(holdings(&b).await, want);
    assert_eq!(holdings(&c).await, want);
    // Progress came through, with byte counts, before each result.
    assert!(events.iter().any(|e| matches!(e,
        Event::Progress { instance, status, completed: Some(_), total: Some(_), .. }
            if instance == "e2" && status.starts_with("pulling "))));
    assert!(matches!(events.last(), Some(Event::Summary(_))));

    let again = plan_now(&config, None).await;
    assert!(
        again.actions.is_empty(),
        "second run plans nothing: {again:?}"
    );
}

#[tokio::test]
async fn digest_mismatch_is_repaired_on_the_lagging_instance() {
    let (old, new) = (digest('a'), digest('b'));
    let a = emu("a", &[&format!("m@{new}")]).await;
    let b = emu("b", &[&format!("m@{new}")]).await;
    let c = emu("c", &[&format!("m@{old}")]).await;
    // What c's registry serves now: the fleet's version.
    control(&c, "registry", json!({"name": "m", "digest": new})).await;
    let config = config(&[&a, &b, &c]);
    let plan = plan_now(&config, None).await;
    assert_eq!(plan.actions.len(), 1, "{plan:?}");
    let action = &plan.actions[0];
    assert_eq!(
        (action.instance.as_str(), action.reason),
        ("e2", Some(Reason::DigestMismatch))
    );
    let (summary, _) = sync_once(&config, None).await;
    assert!(summary.ok(), "{summary:?}");
    assert_eq!(holdings(&c).await, ["m:latest bbbb"]);
    assert!(plan_now(&config, None).await.actions.is_empty());
}

#[tokio::test]
async fn a_registry_that_moved_on_is_reported_not_hidden() {
    let (a, b) = (
        emu("a", &[&format!("m@{}", digest('a'))]).await,
        emu("b", &[]).await,
    );
    // b's registry serves another version than the fleet holds.
    control(&b, "registry", json!({"name": "m", "digest": digest('c')})).await;
    let (summary, _) = sync_once(&config(&[&a, &b]), None).await;
    assert_eq!(summary.failed, 1, "{summary:?}");
    assert!(
        summary.failures[0].contains("canonical digest is aaaaaaaaaaaa"),
        "{summary:?}"
    );
}

#[tokio::test]
async fn placement_with_replicas_and_warm_models() {
    let a = emu("a", &["m", "big", "x", "nomic+embed"]).await;
    let b = emu("b", &["x"]).await;
    let c = emu("c", &[]).await;
    // nomic is embedding-only: it is loaded through /api/embed.
    let p = placement(
        r#"
[[model]]
name = "m"
replicas = 2
warm = 1

[[model]]
name = "nomic"
instances = ["e1"]
warm = 1

[[model]]
name = "fresh"
replicas = 1
"#,
    );
    let config = config(&[&a, &b, &c]);
    let (summary, _) = sync_once(&config, Some(&p)).await;
    assert!(summary.ok(), "{summary:?}");
    // Models are planned in key order: fresh goes to c, the emptiest;
    // then m's second replica to b (one model each, b by name); m is
    // loaded where it already was (a), nomic on its only instance.
    let names = |h: Vec<String>| {
        h.into_iter()
            .map(|s| s.split(' ').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(holdings(&a).await),
        ["big:latest", "m:latest", "nomic:latest", "x:latest"]
    );
    assert_eq!(
        names(holdings(&b).await),
        ["m:latest", "nomic:latest", "x:latest"]
    );
    assert_eq!(names(holdings(&c).await), ["fresh:latest"]);
    assert_eq!(loaded(&a).await, ["m:latest"]);
    assert_eq!(loaded(&b).await, ["nomic:latest"]);
    assert!(loaded(&c).await.is_empty());
    // Unlisted models (big, x) were left alone: default = "keep".
    let again = plan_now(&config, Some(&p)).await;
    assert!(again.actions.is_empty(), "{again:?}");
}

#[tokio::test]
async fn one_instance_failing_mid_pull_does_not_stop_the_others() {
    let a = emu("a", &["m"]).await;
    let (b, c) = (emu("b", &[]).await, emu("c", &[]).await);
    control(&b, "fault", json!({"kind": "fail_pull", "after_chunks": 2})).await;
    let config = config(&[&a, &b, &c]);
    let (summary, events) = sync_once(&config, None).await;
    assert_eq!((summary.succeeded, summary.failed), (1, 1), "{summary:?}");
    assert!(
        summary.failures[0].starts_with("e1 m:latest (pull): "),
        "{summary:?}"
    );
    assert!(
        summary.failures[0].contains("emulated fault"),
        "{summary:?}"
    );
    assert_eq!(holdings(&c).await, holdings(&a).await);
    assert!(holdings(&b).await.is_empty());
    let failed = events.iter().find_map(|e| match e {
        Event::Result {
            instance,
            ok: false,
            kind,
            ..
        } => Some((instance.clone(), *kind)),
        _ => None,
    });
    assert_eq!(failed, Some(("e1".to_string(), ActionKind::Pull)));
    // Fixed, the next run does only what is left.
    control(&b, "fault", json!({"kind": "none"})).await;
    let left = plan_now(&config, None).await;
    assert_eq!(left.actions.len(), 1, "{left:?}");
    assert_eq!(left.actions[0].instance, "e1");
}
