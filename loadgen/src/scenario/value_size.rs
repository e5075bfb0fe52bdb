//! The `value_size` field: a fixed size, a uniform range, or a weighted list of sizes.
//!
//! Sizes are integers (bytes) or strings with a binary unit (`"1KiB"`, `"64 KiB"`, `"1MiB"`;
//! `KB`/`MB` are read as the binary units too, as storage engineers usually mean them). This
//! module only parses and prints; bounds are checked by validation.

use serde::{Deserialize, Serialize, Serializer};

/// How big written values are, in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "toml::Value")]
pub enum ValueSize {
    /// Every value has this size.
    Fixed(u64),
    /// Uniform in `min..=max`.
    Range {
        /// Smallest size.
        min: u64,
        /// Largest size.
        max: u64,
    },
    /// One of `(size, weight)`, chosen in proportion to the weights.
    Weighted(Vec<(u64, u64)>),
}

impl ValueSize {
    /// The largest value this spec can produce.
    pub fn max(&self) -> u64 {
        match self {
            Self::Fixed(s) => *s,
            Self::Range { max, .. } => *max,
            Self::Weighted(list) => list.iter().map(|(s, _)| *s).max().unwrap_or(0),
        }
    }

    /// The smallest value this spec can produce.
    pub fn min(&self) -> u64 {
        match self {
            Self::Fixed(s) => *s,
            Self::Range { min, .. } => *min,
            Self::Weighted(list) => list.iter().map(|(s, _)| *s).min().unwrap_or(0),
        }
    }

    /// The mean size, used to size the echo ceiling's payload.
    pub fn mean(&self) -> f64 {
        match self {
            Self::Fixed(s) => *s as f64,
            Self::Range { min, max } => (*min as f64 + *max as f64) / 2.0,
            Self::Weighted(list) => {
                let total: u64 = list.iter().map(|(_, w)| *w).sum();
                if total == 0 {
                    return 0.0;
                }
                list.iter().map(|(s, w)| *s as f64 * *w as f64).sum::<f64>() / total as f64
            }
        }
    }
}

impl Serialize for ValueSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        toml::Value::from(self).serialize(serializer)
    }
}

impl From<&ValueSize> for toml::Value {
    fn from(v: &ValueSize) -> Self {
        match v {
            ValueSize::Fixed(s) => toml::Value::Integer(*s as i64),
            ValueSize::Range { min, max } => {
                let mut t = toml::map::Map::new();
                t.insert("min".into(), toml::Value::Integer(*min as i64));
                t.insert("max".into(), toml::Value::Integer(*max as i64));
                toml::Value::Table(t)
            }
            ValueSize::Weighted(list) => {
                let mut t = toml::map::Map::new();
                let arr = list
                    .iter()
                    .map(|(s, w)| {
                        toml::Value::Array(vec![
                            toml::Value::Integer(*s as i64),
                            toml::Value::Integer(*w as i64),
                        ])
                    })
                    .collect();
                t.insert("weighted".into(), toml::Value::Array(arr));
                toml::Value::Table(t)
            }
        }
    }
}

const SHAPES: &str = "expected a size (1024, \"64KiB\"), { min = .., max = .. } or \
                      { weighted = [[size, weight], ...] }";

impl TryFrom<toml::Value> for ValueSize {
    type Error = String;

    fn try_from(v: toml::Value) -> Result<Self, Self::Error> {
        match v {
            toml::Value::Integer(_) | toml::Value::String(_) => Ok(Self::Fixed(size(&v)?)),
            toml::Value::Table(t) => {
                if let Some(list) = t.get("weighted") {
                    if t.len() != 1 {
                        return Err(format!("`weighted` stands alone; {SHAPES}"));
                    }
                    let toml::Value::Array(items) = list else {
                        return Err(format!("`weighted` must be an array; {SHAPES}"));
                    };
                    let mut out = Vec::with_capacity(items.len());
                    for item in items {
                        match item {
                            toml::Value::Array(pair) if pair.len() == 2 => {
                                let weight = match &pair[1] {
                                    toml::Value::Integer(w) if *w >= 0 => *w as u64,
                                    other => {
                                        return Err(format!(
                                            "weight must be a non-negative integer, got {other}"
                                        ));
                                    }
                                };
                                out.push((size(&pair[0])?, weight));
                            }
                            other => {
                                return Err(format!(
                                    "each weighted entry is [size, weight], got {other}"
                                ));
                            }
                        }
                    }
                    return Ok(Self::Weighted(out));
                }
                let (Some(min), Some(max)) = (t.get("min"), t.get("max")) else {
                    return Err(SHAPES.to_string());
                };
                if t.len() != 2 {
                    return Err(format!("unknown key beside min and max; {SHAPES}"));
                }
                Ok(Self::Range {
                    min: size(min)?,
                    max: size(max)?,
                })
            }
            other => Err(format!("got {other}; {SHAPES}")),
        }
    }
}

/// One size: an integer number of bytes, or a string with a unit.
fn size(v: &toml::Value) -> Result<u64, String> {
    match v {
        toml::Value::Integer(i) if *i >= 0 => Ok(*i as u64),
        toml::Value::Integer(i) => Err(format!("a size cannot be negative, got {i}")),
        toml::Value::String(s) => parse_size(s),
        other => Err(format!(
            "a size is an integer or a string like \"64KiB\", got {other}"
        )),
    }
}

/// Parses `"1024"`, `"1KiB"`, `"64 KB"`, `"1MiB"`, `"1M"` (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("size {s:?} does not start with a number"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        other => {
            return Err(format!(
                "size {s:?} has unknown unit {other:?} (use B, KiB or MiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} overflows"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("64 KB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("1GiB").is_err());
        assert!(parse_size("KiB").is_err());
    }

    #[test]
    fn shapes_round_trip() {
        for v in [
            ValueSize::Fixed(1024),
            ValueSize::Range { min: 10, max: 20 },
            ValueSize::Weighted(vec![(1024, 9), (65536, 1)]),
        ] {
            let back = ValueSize::try_from(toml::Value::from(&v)).expect("round trip");
            assert_eq!(back, v);
        }
        assert_eq!(ValueSize::Weighted(vec![(10, 1), (30, 1)]).mean(), 20.0);
    }
}
