//! Sampling a node through its Prometheus endpoint instead of `/proc`: for a cluster loadgen
//! did not launch (`endpoints`), whose processes it cannot see. A plain HTTP/1.1 `GET /metrics`
//! over a TCP connection (the exposition is small and uncompressed, so a client library would
//! add nothing), then the text format's sample lines for `process_cpu_seconds_total`,
//! `process_resident_memory_bytes` and the `pid` label of `kvstore_node_info`.
//!
//! Not here: writing rows (the sampler) or any other metric family.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::procfs::ProcReading;

/// A scrape that takes longer than this is abandoned for this second.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest exposition read (a node's is a few tens of KiB).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// One sample line of the text exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (with any `_total`, `_bucket`... suffix).
    pub name: String,
    /// Label pairs, in order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if present.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the sample lines of a text exposition (Prometheus 0.0.4 or OpenMetrics), skipping
/// comments, blank lines and `# EOF`. Label values are unescaped (`\\`, `\"`, `\n`). A line
/// that does not parse is an error naming it: a node that writes one is broken.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_line(line).ok_or_else(|| format!("line {}: {line:?}", no + 1))?);
    }
    Ok(out)
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let end = loop {
            // Skip separators.
            while let Some((_, c)) = chars.peek() {
                if *c == ',' || c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            let (i, c) = *chars.peek()?;
            if c == '}' {
                break i + 1;
            }
            let eq = body[i..].find('=')? + i;
            let key = body[i..eq].trim().to_string();
            while chars.peek().is_some_and(|(j, _)| *j <= eq) {
                chars.next();
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break,
                    other => value.push(other),
                }
            }
            labels.push((key, value));
        };
        rest = &body[end..];
    }
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

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
    fn sample_lines_parse_with_labels_escapes_and_timestamps() {
        let text = "# HELP x_total Things.\n# TYPE x_total counter\n\
            x_total{op=\"get\",outcome=\"ok\"} 12\n\
            y_bucket{le=\"+Inf\"} 3 1700000000000\n\
            z{path=\"a\\\"b\\\\c\",} 1.5e3\n\
            process_cpu_seconds_total 4.25\n# EOF\n";
        let s = parse(text).unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].name, "x_total");
        assert_eq!(s[0].label("op"), Some("get"));
        assert_eq!(s[0].value, 12.0);
        assert_eq!(s[1].label("le"), Some("+Inf"));
        assert_eq!(s[2].label("path"), Some("a\"b\\c"));
        assert_eq!(s[2].value, 1500.0);
        assert_eq!(s[3].value, 4.25);
        assert!(parse("broken{a=\"1\" 2\n").is_err());
        assert!(parse("novalue\n").is_err());
    }

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
