//! A parser for the sample lines of the Prometheus text exposition format (0.0.4, and
//! OpenMetrics text, whose sample lines are the same): `name{label="value",...} value
//! [timestamp]`. loadgen uses it to read a node's CPU and memory from `/metrics`, and the
//! metrics tests to check what a real node exposes. It reads samples only; `# HELP` / `# TYPE`
//! lines are skipped.

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
}
