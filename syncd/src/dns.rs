//! A minimal DNS client for `--dns-server`: one A and one AAAA question
//! over UDP, answered with the addresses in the reply. Without
//! `--dns-server`, discovery uses the system's resolver instead (see
//! [`crate::membership`]).
//!
//! Encoding and decoding are pure and bounds-checked: a malformed reply is
//! an error, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use thiserror::Error;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// Why a DNS lookup gave no addresses.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DnsError {
    #[error("{0:?} is not a DNS name")]
    BadName(String),
    #[error("the DNS reply is malformed")]
    Malformed,
    #[error("the DNS server answered with error code {0}")]
    Rcode(u8),
    #[error("DNS over UDP failed: {0}")]
    Io(String),
    #[error("the DNS server did not answer within {0:?}")]
    Timeout(Duration),
}

/// A query for `name` and `qtype` with message id `id`.
pub fn query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, DnsError> {
    let mut out = Vec::with_capacity(name.len() + 18);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD, one question
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..=63).contains(l));
        let Some(len) = len else {
            return Err(DnsError::BadName(name.to_string()));
        };
        out.push(len);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(out)
}

fn u16_at(buf: &[u8], at: usize) -> Result<u16, DnsError> {
    match buf.get(at..at + 2) {
        Some(&[a, b]) => Ok(u16::from_be_bytes([a, b])),
        _ => Err(DnsError::Malformed),
    }
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(buf: &[u8], mut at: usize) -> Result<usize, DnsError> {
    loop {
        let len = *buf.get(at).ok_or(DnsError::Malformed)?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xC0 == 0xC0 => return Ok(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

/// The A and AAAA addresses in the reply `packet` to query `id`.
pub fn answers(packet: &[u8], id: u16) -> Result<Vec<IpAddr>, DnsError> {
    if u16_at(packet, 0)? != id {
        return Err(DnsError::Malformed);
    }
    let flags = u16_at(packet, 2)?;
    let rcode = (flags & 0x000F) as u8;
    if flags & 0x8000 == 0 {
        return Err(DnsError::Malformed);
    }
    if rcode != 0 {
        return Err(DnsError::Rcode(rcode));
    }
    let (questions, count) = (u16_at(packet, 4)?, u16_at(packet, 6)?);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(packet, at)? + 4;
    }
    let mut found = Vec::new();
    for _ in 0..count {
        at = skip_name(packet, at)?;
        let (rtype, len) = (u16_at(packet, at)?, usize::from(u16_at(packet, at + 8)?));
        let data = packet
            .get(at + 10..at + 10 + len)
            .ok_or(DnsError::Malformed)?;
        match (rtype, data.len()) {
            (TYPE_A, 4) => {
                let mut octets = [0u8; 4];
                octets.copy_from_slice(data);
                found.push(IpAddr::V4(Ipv4Addr::from(octets)))
            }
            (TYPE_AAAA, 16) => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(data);
                found.push(IpAddr::V6(Ipv6Addr::from(octets)));
            }
            _ => {}
        }
        at += 10 + len;
    }
    Ok(found)
}

/// Every A and AAAA address of `name` according to `server`.
pub async fn lookup(
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<Vec<IpAddr>, DnsError> {
    let io = |e: std::io::Error| DnsError::Io(e.to_string());
    let local: SocketAddr = if server.is_ipv4() {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    };
    let socket = tokio::net::UdpSocket::bind(local).await.map_err(io)?;
    socket.connect(server).await.map_err(io)?;
    let mut all = Vec::new();
    for (id, qtype) in [(0x4c42u16, TYPE_A), (0x4c43, TYPE_AAAA)] {
        socket.send(&query(id, name, qtype)?).await.map_err(io)?;
        let mut buf = vec![0u8; 4096];
        let reply = loop {
            let n = tokio::time::timeout(timeout, socket.recv(&mut buf))
                .await
                .map_err(|_| DnsError::Timeout(timeout))?
                .map_err(io)?;
            // A late reply to the other question is skipped.
            let got = buf.get(..n).unwrap_or_default();
            if u16_at(got, 0) == Ok(id) {
                break got;
            }
        };
        all.extend(answers(reply, id)?);
    }
    all.dedup();
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply to `q` with `addrs`, names compressed to the question.
    fn reply(q: &[u8], rcode: u8, addrs: &[IpAddr]) -> Vec<u8> {
        let mut r = q.to_vec();
        r[2] = 0x81;
        r[3] = 0x80 | rcode;
        r[7] = addrs.len() as u8;
        for a in addrs {
            let (t, data): (u16, Vec<u8>) = match a {
                IpAddr::V4(v4) => (TYPE_A, v4.octets().to_vec()),
                IpAddr::V6(v6) => (TYPE_AAAA, v6.octets().to_vec()),
            };
            r.extend_from_slice(&[0xC0, 12]);
            r.extend_from_slice(&t.to_be_bytes());
            r.extend_from_slice(&[0, 1, 0, 0, 0, 5]);
            r.extend_from_slice(&(data.len() as u16).to_be_bytes());
            r.extend_from_slice(&data);
        }
        r
    }

    #[test]
    fn a_query_names_its_labels_and_type() {
        let q = query(7, "ollama.default.svc.", TYPE_A).unwrap();
        assert_eq!(&q[..4], &[0, 7, 1, 0]);
        assert_eq!(
            &q[12..],
            b"\x06ollama\x07default\x03svc\x00\x00\x01\x00\x01"
        );
        assert!(query(1, "a..b", TYPE_A).is_err());
        assert!(query(1, &"x".repeat(64), TYPE_A).is_err());
    }

    #[test]
    fn answers_are_read_and_bad_replies_refused() {
        let q = query(9, "ollama", TYPE_A).unwrap();
        let addrs: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap(), "::1".parse().unwrap()];
        assert_eq!(answers(&reply(&q, 0, &addrs), 9), Ok(addrs.clone()));
        assert_eq!(answers(&reply(&q, 0, &addrs), 8), Err(DnsError::Malformed));
        assert_eq!(answers(&reply(&q, 3, &[]), 9), Err(DnsError::Rcode(3)));
        assert_eq!(
            answers(&q, 9),
            Err(DnsError::Malformed),
            "a query is no reply"
        );
        let whole = reply(&q, 0, &addrs);
        for cut in 0..whole.len() {
            let _ = answers(&whole[..cut], 9); // never panics
        }
    }
}
