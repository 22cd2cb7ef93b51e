//! The `ollama-emu` binary: its ready line, exit code 64 on bad input,
//! and a clean exit on SIGTERM.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ollama-emu");

#[test]
fn bad_flags_and_configs_exit_64_naming_the_value() {
    let out = Command::new(BIN)
        .args(["--load-time", "soon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("soon"));

    let out = Command::new(BIN)
        .args(["--model", "bad name"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad name"));

    let dir = std::env::temp_dir().join(format!("ollama-emu-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::File::create(&file)
        .unwrap()
        .write_all(b"load_time = \"2 parsecs\"\n")
        .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 parsecs"));
}

#[test]
fn prints_one_ready_line_serves_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("ollama-emu-cli-ok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("emu.toml");
    std::fs::write(
        &file,
        "name = \"from-file\"\nload_time = \"100ms\"\nkeep_alive = \"-1m\"\n\
         [[models]]\nname = \"llama3\"\nloaded = true\n",
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--name", "cli-emu", "--config"])
        .arg(&file)
        .args([
            "--model",
            &format!("qwen2.5:0.5b@sha256:{}", "ab".repeat(32)),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .strip_prefix("ollama-emu cli-emu listening on ")
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
        .trim()
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let tags: serde_json::Value = reqwest::get(format!("{url}/api/tags"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(tags["models"].as_array().unwrap().len(), 2);
        let ps: serde_json::Value = reqwest::get(format!("{url}/api/ps"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ps["models"][0]["name"], "llama3:latest");
    });

    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    for _ in 0..50 {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    panic!("did not stop on SIGTERM");
}
