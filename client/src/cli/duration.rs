//! Human durations for the command line: `500ms`, `10s`, `2m`, `1h`, `1.5s`, `1m30s`.
//!
//! A dozen lines of parsing do not justify a dependency (humantime would also accept forms
//! like `2 months`, which mean nothing for a TTL). Units: `ms`, `s`, `m`, `h`, `d`; every
//! number needs a unit, so `10` is refused rather than guessed.

use std::time::Duration;

/// Parses `text` as a sum of `<number><unit>` parts, e.g. `1m30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration: expected e.g. 500ms, 10s, 2m, 1h".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        if num.is_empty() {
            return Err(format!("{text:?}: expected a number before {unit:?}"));
        }
        let value: f64 = num
            .parse()
            .map_err(|_| format!("{text:?}: {num:?} is not a number"))?;
        let unit_secs = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "" => {
                return Err(format!(
                    "{text:?}: missing unit after {num} (use ms, s, m, h or d)"
                ));
            }
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?} (use ms, s, m, h or d)"
                ));
            }
        };
        let part = Duration::try_from_secs_f64(value * unit_secs)
            .map_err(|_| format!("{text:?}: out of range"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("{text:?}: out of range"))?;
        rest = next;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("10s", Duration::from_secs(10)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1d", Duration::from_secs(86_400)),
            ("1.5s", Duration::from_millis(1500)),
            ("1m30s", Duration::from_secs(90)),
            (" 3s ", Duration::from_secs(3)),
            ("0s", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn refused_forms_say_why() {
        let cases = [
            ("", "empty"),
            ("10", "missing unit"),
            ("10x", "unknown unit"),
            ("s", "expected a number"),
            ("1..2s", "not a number"),
            ("-5s", "expected a number"),
            ("99999999999999999999999h", "out of range"),
        ];
        for (text, why) in cases {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
