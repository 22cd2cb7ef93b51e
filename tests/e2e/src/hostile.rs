//! Hostile "instances": a raw HTTP/1.1 server in the test process that
//! answers `/api/tags` the way a broken or malicious server might (and
//! `/api/ps`, `/api/version` plainly), for syncd to poll beside real
//! emulators. Bounded traffic on loopback: each answer is at most a few
//! MiB, and the endless ones stop when syncd hangs up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::rig::Emu;

/// How a hostile instance answers `/api/tags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with 5 MiB of valid JSON (over syncd's 4 MiB cap).
    OverSize,
    /// A good model and one whose `details` nest 124 deep.
    OverDeep,
    /// 100,000 valid minimal names (about 1.9 MB).
    ManyNames,
    /// A good model and one with a 3.5 MiB string in `details`.
    FatDetails,
    /// Headers, then one byte of the body every 50 ms.
    Trickle,
    /// A chunked body that never ends.
    Endless,
    /// The connection is closed (reset) as soon as the request is read.
    Reset,
}

/// A running hostile instance, as an [`Emu`] the rig can configure
/// (it is no process: `proc` is `usize::MAX`, never kill it).
pub async fn spawn(name: &str, mode: Hostile) -> anyhow::Result<Emu> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    // Built once: a poll every 200 ms must not wait for megabytes of text.
    let body = Arc::new(tags_body(mode));
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(serve(conn, mode, Arc::clone(&body)));
        }
    });
    Ok(Emu {
        name: name.to_string(),
        addr,
        url: format!("http://{addr}"),
        proc: usize::MAX,
    })
}

async fn serve(mut conn: TcpStream, mode: Hostile, body: Arc<Vec<u8>>) {
    let Some(path) = read_head(&mut conn).await else {
        return;
    };
    let _ = match (path.as_str(), mode) {
        ("/api/version", _) => send(&mut conn, br#"{"version":"0.9.7"}"#).await,
        ("/api/tags", Hostile::Reset) => {
            let _ = conn.set_zero_linger();
            return;
        }
        ("/api/tags", m) => tags(&mut conn, m, &body).await,
        _ => send(&mut conn, br#"{"models":[]}"#).await,
    };
}

/// The request path, once the head is read (bodies are not expected).
async fn read_head(conn: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 << 10 {
        let n = conn.read(&mut buf).await.ok().filter(|n| *n > 0)?;
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ').nth(1).map(str::to_string)
}

async fn send(conn: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body).await?;
    conn.shutdown().await
}

fn entry(name: &str, details: &str) -> String {
    format!(
        r#"{{"name":"{name}","model":"{name}","modified_at":"2025-01-01T00:00:00Z","size":1,"digest":"{}","details":{details}}}"#,
        "ab".repeat(32)
    )
}

fn list(entries: &[String]) -> Vec<u8> {
    format!(r#"{{"models":[{}]}}"#, entries.join(",")).into_bytes()
}

/// The `/api/tags` body of the modes that send one whole.
fn tags_body(mode: Hostile) -> Vec<u8> {
    let good = entry("good:latest", r#"{"format":"gguf"}"#);
    match mode {
        Hostile::Garbage => b"<html>not an Ollama</html>".to_vec(),
        Hostile::OverSize => {
            let pad = "a".repeat(5 << 20);
            list(&[entry("big:latest", &format!(r#"{{"x":"{pad}"}}"#))])
        }
        Hostile::OverDeep => {
            let deep = format!("{}{}", "[".repeat(124), "]".repeat(124));
            list(&[good, entry("deep:latest", &deep)])
        }
        Hostile::ManyNames => {
            let names: Vec<String> = (0..100_000)
                .map(|i| format!(r#"{{"name":"m{i}"}}"#))
                .collect();
            list(&names)
        }
        Hostile::FatDetails => {
            let fat = format!(r#"{{"x":"{}"}}"#, "a".repeat(3_500_000));
            list(&[good, entry("fat:latest", &fat)])
        }
        Hostile::Trickle | Hostile::Endless | Hostile::Reset => Vec::new(),
    }
}

async fn tags(conn: &mut TcpStream, mode: Hostile, body: &[u8]) -> std::io::Result<()> {
    match mode {
        Hostile::Trickle => {
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n")
                .await?;
            for _ in 0..1_000_000 {
                conn.write_all(b" ").await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(())
        }
        Hostile::Endless => {
            conn.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                .await?;
            let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
            loop {
                conn.write_all(chunk.as_bytes()).await?;
                tokio::task::yield_now().await;
            }
        }
        Hostile::Reset => Ok(()),
        _ => send(conn, body).await,
    }
}
