//! The `syncd` binary: exit codes, check-config, run and SIGTERM, status.

mod common;

use std::process::{Command, Stdio};

use common::*;

fn syncd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncd"));
    for var in [
        "OLLAMA_BASE_URLS",
        "SYNCD_INSTANCES",
        "SYNCD_CONFIG",
        "SYNCD_LISTEN",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

#[test]
fn check_config_prints_resolved_instances() {
    let out = syncd()
        .args(["check-config", "--instance", "gpu-a=http://10.0.0.5:11434"])
        .env("OLLAMA_BASE_URLS", " http://gpu-b/ ; ")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip_while(|l| !l.starts_with("INSTANCE"))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            ["gpu-a", "http://10.0.0.5:11434", "gpu-a"],
            ["gpu-b_11434", "http://gpu-b:11434", "gpu-b_11434"]
        ],
        "{text}"
    );
}

#[test]
fn bad_configuration_exits_64_naming_the_value() {
    let dir = std::env::temp_dir().join(format!("syncd-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("fleet.toml");
    std::fs::write(
        &file,
        "[[instance]]\nurl = \"http://a:1\"\n\n[[instance]]\nurl = \"ftp://b\"\n",
    )
    .unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["check-config".into()],
            "no Ollama instances configured",
        ),
        (
            vec![
                "check-config".into(),
                "--instance".into(),
                "a b=http://x".into(),
            ],
            "invalid instance name \"a b\"",
        ),
        (
            vec![
                "check-config".into(),
                "--config".into(),
                file.display().to_string(),
            ],
            "fleet.toml, line 5",
        ),
        (
            vec![
                "run".into(),
                "--base-urls".into(),
                "http://x".into(),
                "--timeout".into(),
                "5s".into(),
            ],
            "--timeout (5s) must be shorter than --interval (2s)",
        ),
        (
            vec![
                "run".into(),
                "--base-urls".into(),
                "http://x".into(),
                "--interval".into(),
                "soon".into(),
            ],
            "not a duration",
        ),
    ];
    for (args, expected) in cases {
        let out = syncd().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

#[test]
fn every_flag_is_documented_with_its_environment_variable() {
    let out = syncd().args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "OLLAMA_BASE_URLS",
        "SYNCD_INSTANCES",
        "SYNCD_CONFIG",
        "SYNCD_LISTEN",
        "SYNCD_INTERVAL",
        "SYNCD_TIMEOUT",
        "SYNCD_DOWN_AFTER",
        "SYNCD_UP_AFTER",
        "SYNCD_MAX_BACKOFF",
        "SYNCD_VERSION_EVERY",
        "SYNCD_MAX_RESPONSE_BYTES",
    ] {
        assert!(
            help.contains(&format!("[env: {var}")),
            "{var} missing in\n{help}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_status_reads_it_and_sigterm_stops_it() {
    let a = emu("a", &["llama3"]).await;
    let mut child = syncd()
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "100ms",
            "--timeout",
            "80ms",
        ])
        .env("OLLAMA_BASE_URLS", a.url())
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its log, line by line, from a thread (the pipe is read blocking).
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    // syncd bound port 0 and logs the address it got.
    let mut log = String::new();
    let listen = loop {
        let line = lines
            .recv()
            .expect("syncd logged its address before exiting");
        log.push_str(&line);
        log.push('\n');
        if let Some(addr) = serving_address(&line) {
            break addr;
        }
    };
    let url = format!("http://{listen}");
    poll_until_async("syncd run ready", || async {
        reqwest::get(format!("{url}/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    let status = tokio::task::spawn_blocking({
        let url = url.clone();
        move || syncd().args(["status", "--url", &url]).output().unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(
        text.contains("llama3:latest") && text.contains("up"),
        "{text}"
    );

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let exit = tokio::task::spawn_blocking(move || {
        let exit = child.wait().unwrap();
        let _ = reader.join();
        log.extend(lines.try_iter().map(|l| l + "\n"));
        (exit, log)
    })
    .await
    .unwrap();
    assert!(exit.0.success(), "{:?}\n{}", exit.0, exit.1);
    assert!(exit.1.contains("model map changed"), "{}", exit.1);
    assert!(exit.1.contains("shutting down"), "{}", exit.1);

    let refused = syncd().args(["status", "--url", &url]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot reach syncd"));
}
