//! Sampling a node through its Prometheus endpoint instead of `/proc`: for a cluster loadgen
//! did not launch (`endpoints`), whose processes it cannot see. A plain HTTP/1.1 `GET /metrics`
//! over a TCP connection (the exposition is small and uncompressed, so a client library would
//! add nothing), then (with the server's parser) the text format's sample lines for
//! `process_cpu_seconds_total`, `process_resident_memory_bytes` and the `pid` label of
//! `kvstore_node_info`.
//!
//! Not here: writing rows (the sampler) or any other metric family.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use kvstore_server::metrics::procfs::ProcReading;
pub use kvstore_server::metrics::text::{Sample, parse};

/// A scrape that takes longer than this is abandoned for this second.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest exposition read (a node's is a few tens of KiB).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// `GET http://<addr>/metrics`, returning the body.
pub async fn fetch(addr: &str) -> Result<String, String> {
    tokio::time::timeout(SCRAPE_TIMEOUT, fetch_inner(addr))
        .await
        .map_err(|_| format!("{addr}: no answer within {SCRAPE_TIMEOUT:?}"))?
}

async fn fetch_inner(addr: &str) -> Result<String, String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut buf = Vec::new();
    (&mut s)
        .take(MAX_BODY as u64)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}: not an HTTP response"))?;
    let status = head.lines().next().unwrap_or("");
    if !status.contains(" 200") {
        return Err(format!("{addr}: {status}"));
    }
    if head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        return dechunk(body).ok_or_else(|| format!("{addr}: bad chunked body"));
    }
    Ok(body.to_string())
}

fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// A node's CPU and memory, and its pid when it says, from its exposition.
pub fn reading(samples: &[Sample]) -> Option<(ProcReading, Option<u32>)> {
    let by_name: HashMap<&str, &Sample> = samples.iter().map(|s| (s.name.as_str(), s)).collect();
    let cpu = by_name.get("process_cpu_seconds_total")?.value;
    let rss = by_name.get("process_resident_memory_bytes")?.value;
    let pid = by_name
        .get("kvstore_node_info")
        .and_then(|s| s.label("pid"))
        .and_then(|p| p.parse().ok());
    Some((
        ProcReading {
            cpu_s: cpu,
            rss_bytes: rss as u64,
        },
        pid,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_needs_cpu_and_memory() {
        let s = parse(
            "process_cpu_seconds_total 2.5\nprocess_resident_memory_bytes 1048576\n\
             kvstore_node_info{node_id=\"1\",pid=\"77\"} 1\n",
        )
        .unwrap();
        let (r, pid) = reading(&s).unwrap();
        assert_eq!(r.cpu_s, 2.5);
        assert_eq!(r.rss_bytes, 1 << 20);
        assert_eq!(pid, Some(77));
        assert!(reading(&parse("process_cpu_seconds_total 1\n").unwrap()).is_none());
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").as_deref(),
            Some("hello world")
        );
    }
}
