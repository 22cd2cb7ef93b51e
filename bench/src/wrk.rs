//! Runs `wrk` (a real load generator) with a fixed body and reads its
//! summary, printed as JSON by a generated Lua `done` hook.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// What one `wrk` run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct WrkResult {
    pub requests: u64,
    /// Requests per second.
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Non-2xx/3xx answers plus socket errors.
    pub errors: u64,
    /// CPU time the proxy spent per request (µs), when the caller measured
    /// it; 0 otherwise.
    pub cpu_us: f64,
}

/// Writes a Lua script that POSTs the file at `body` and reports JSON.
pub fn script(
    dir: &Path,
    name: &str,
    body: &Path,
    path: &str,
) -> std::io::Result<std::path::PathBuf> {
    let lua = format!(
        r#"local f = io.open("{body}", "rb")
wrk.method = "POST"
wrk.path = "{path}"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH {{"requests":%d,"duration_us":%d,"p50":%d,"p99":%d,"errors":%d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout + e.status))
end
"#,
        body = body.display()
    );
    let out = dir.join(format!("{name}.lua"));
    std::fs::write(&out, lua)?;
    Ok(out)
}

/// Runs `wrk -t1 -cN -dD` (whole seconds, as wrk reads them) against
/// `url`, pinned to `cpus` with taskset.
pub fn run(
    script: &Path,
    url: &str,
    connections: u32,
    duration: Duration,
    cpus: &str,
) -> anyhow::Result<WrkResult> {
    let out = Command::new("taskset")
        .args(["-c", cpus, "wrk", "-t1"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .args(["--timeout", "10s", "-s"])
        .arg(script)
        .arg(url)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run wrk (scripts/bench.sh installs it): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse(&text).ok_or_else(|| {
        anyhow::anyhow!(
            "wrk printed no summary:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Reads the `BENCH {json}` line of the Lua hook.
pub fn parse(stdout: &str) -> Option<WrkResult> {
    let line = stdout.lines().find_map(|l| l.strip_prefix("BENCH "))?;
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let requests = v["requests"].as_u64()?;
    let secs = v["duration_us"].as_f64()? / 1e6;
    Some(WrkResult {
        requests,
        rps: if secs > 0.0 {
            requests as f64 / secs
        } else {
            0.0
        },
        p50_us: v["p50"].as_f64()?,
        p99_us: v["p99"].as_f64()?,
        errors: v["errors"].as_u64()?,
        cpu_us: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_hook_line() {
        let out = "Running 2s test\nBENCH {\"requests\":2000,\"duration_us\":2000000,\"p50\":120,\"p99\":900,\"errors\":3}\n";
        let r = parse(out).unwrap();
        assert_eq!(r.requests, 2000);
        assert_eq!(r.rps, 1000.0);
        assert_eq!((r.p50_us, r.p99_us, r.errors), (120.0, 900.0, 3));
        assert!(parse("no summary").is_none());
    }
}
