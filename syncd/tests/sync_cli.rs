//! `syncd sync`, the binary: plain progress and the summary, `--dry-run`,
//! exit codes, a bad placement, and bars on a terminal.

// Test helpers: a failed unwrap here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::{Command, Output};

use common::*;
use serde_json::json;

fn syncd(args: Vec<String>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncd"));
    for var in [
        "OLLAMA_BASE_URLS",
        "SYNCD_INSTANCES",
        "SYNCD_CONFIG",
        "SYNCD_PLACEMENT",
        "SYNCD_SYNC_URL",
        "SYNCD_API_TOKEN",
        "SYNCD_PROGRESS",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("sync").args(args);
    cmd
}

/// Runs the command off the runtime's threads (the emulators live there).
async fn output(mut cmd: Command) -> (Output, String, String) {
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_progress_summary_and_a_quiet_second_run() {
    let (a, b) = (emu("a", &["llama3.2"]).await, emu("b", &[]).await);
    let flags = instance_flags(&[&a, &b]);

    let (out, stdout, stderr) =
        output(syncd([flags.clone(), vec!["--dry-run".into()]].concat())).await;
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with("INSTANCE"), "{stdout}");
    assert!(
        stdout.contains("e1        llama3.2:latest  pull    missing"),
        "{stdout}"
    );
    assert!(holdings(&b).await.is_empty(), "a dry run changes nothing");

    // stdout is a pipe: plain lines.
    let (out, stdout, stderr) = output(syncd(flags.clone())).await;
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("plan: 1 pulls, 0 loads"), "{stdout}");
    let pulling = stdout
        .lines()
        .find(|l| l.starts_with("e1  llama3.2:latest  pulling ") && l.ends_with('%'));
    assert!(pulling.is_some(), "{stdout}");
    assert!(stdout.contains("e1  llama3.2:latest  done\n"), "{stdout}");
    assert!(
        stdout.contains("sync: 1 actions, 1 succeeded, 0 failed"),
        "{stdout}"
    );
    assert!(
        !stdout.contains('\x1b'),
        "no escape codes in plain mode: {stdout:?}"
    );

    let (out, stdout, _) = output(syncd(flags)).await;
    assert!(out.status.success());
    assert!(stdout.starts_with("nothing to do"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pull_exits_1_after_the_others_finish() {
    let a = emu("a", &["m"]).await;
    let (b, c) = (emu("b", &[]).await, emu("c", &[]).await);
    control(&b, "fault", json!({"kind": "fail_pull", "after_chunks": 2})).await;
    let flags = instance_flags(&[&a, &b, &c]);
    let (out, stdout, stderr) = output(syncd(
        [flags, vec!["--progress".into(), "plain".into()]].concat(),
    ))
    .await;
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("e1  m:latest  FAILED: pull model: emulated fault"),
        "{stdout}"
    );
    assert!(stdout.contains("e2  m:latest  done"), "{stdout}");
    assert!(stdout.contains("1 succeeded, 1 failed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_placement_exits_64_with_its_line() {
    let a = emu("a", &["m"]).await;
    let dir = std::env::temp_dir().join(format!("syncd-sync-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("placement.toml");
    std::fs::write(
        &file,
        "[[model]]\nname = \"m\"\n\n[[model]]\nname = \"n\"\ninstances = [\"gpu-z\"]\n",
    )
    .unwrap();
    let args = [
        instance_flags(&[&a]),
        vec!["--placement".into(), file.display().to_string()],
    ]
    .concat();
    let (out, stdout, stderr) = output(syncd(args)).await;
    assert_eq!(out.status.code(), Some(64), "{stdout}{stderr}");
    assert!(
        stderr.contains("line 4") && stderr.contains("unknown instance \"gpu-z\""),
        "{stderr}"
    );
    assert!(holdings(&a).await.len() == 1);
}

/// Bars need a terminal: run under `script` (util-linux), which gives the
/// command a pty. Skipped where `script` is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_on_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` to provide a pty");
        return;
    }
    let (a, b) = (emu("a", &["llama3.2"]).await, emu("b", &[]).await);
    let line = format!(
        "{} sync {}",
        env!("CARGO_BIN_EXE_syncd"),
        instance_flags(&[&a, &b]).join(" ")
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"]).env("TERM", "xterm");
    let (out, stdout, stderr) = output(cmd).await;
    assert!(out.status.success(), "{stdout}{stderr}");
    // The bar template: prefix, [====], percent, message.
    assert!(
        stdout.contains("e1  llama3.2:latest [=============================="),
        "{stdout:?}"
    );
    assert!(stdout.contains("100% done"), "{stdout:?}");
    assert!(
        stdout.contains("sync: 1 actions, 1 succeeded, 0 failed"),
        "{stdout:?}"
    );
    assert_eq!(holdings(&b).await, holdings(&a).await);
}

#[test]
fn run_with_a_bad_placement_exits_64_before_binding() {
    let dir = std::env::temp_dir().join(format!("syncd-run-placement-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("placement.toml");
    std::fs::write(&file, "[[model]]\nname = \"m\"\nreplicas = 0\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_syncd"))
        .args([
            "run",
            "--instance",
            "a=http://127.0.0.1:9",
            "--reconcile",
            "--placement",
        ])
        .arg(&file)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("OLLAMA_BASE_URLS")
        .env_remove("SYNCD_INSTANCES")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("line 1") && stderr.contains("replicas must be at least 1"),
        "{stderr}"
    );
}
