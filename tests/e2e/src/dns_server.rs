//! A DNS server the test controls: answers every A question with the
//! addresses it is given now (and AAAA questions with none), so a test can
//! make instances appear under and disappear from one name.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// A running server on `127.0.0.1:<port>`; stops when dropped.
pub struct DnsServer {
    pub addr: SocketAddr,
    answers: Arc<Mutex<Vec<Ipv4Addr>>>,
    task: JoinHandle<()>,
}

impl DnsServer {
    /// Starts answering with `addrs`.
    pub async fn start(addrs: &[Ipv4Addr]) -> anyhow::Result<DnsServer> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let answers = Arc::new(Mutex::new(addrs.to_vec()));
        let shared = answers.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let now = shared.lock().map(|a| a.clone()).unwrap_or_default();
                if let Some(reply) = reply(&buf[..n], &now) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        Ok(DnsServer {
            addr,
            answers,
            task,
        })
    }

    /// From now on, answers with `addrs`.
    pub fn set(&self, addrs: &[Ipv4Addr]) {
        if let Ok(mut a) = self.answers.lock() {
            *a = addrs.to_vec();
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The reply to `query`: its question, then one A record per address
/// (none for other types), names compressed to the question's.
fn reply(query: &[u8], addrs: &[Ipv4Addr]) -> Option<Vec<u8>> {
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + usize::from(*query.get(end)?);
    }
    let question = query.get(12..end + 5)?;
    let is_a = question.get(question.len() - 4..question.len() - 2)? == [0, 1];
    let answers: &[Ipv4Addr] = if is_a { addrs } else { &[] };
    let mut out = query.get(..2)?.to_vec();
    out.extend_from_slice(&[0x81, 0x80, 0, 1, 0, answers.len() as u8, 0, 0, 0, 0]);
    out.extend_from_slice(question);
    for ip in answers {
        out.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}
