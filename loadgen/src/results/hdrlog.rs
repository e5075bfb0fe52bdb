//! HdrHistogram interval logs: `latency.hlog` (from intended start) and `service.hlog`, one
//! interval per second per operation type, tagged with the type's name, values in
//! microseconds, written with the hdrhistogram crate's interval log writer and the V2
//! compressed encoding, so HdrHistogram's tools (HistogramLogProcessor, HdrHistogram plotters)
//! read them and logs from several runs or processes merge by adding intervals.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};

use crate::LoadgenError;
use crate::measure::Measurements;

/// Writes both logs into `dir`.
pub fn write(dir: &Path, m: &Measurements) -> Result<(), LoadgenError> {
    write_one(&dir.join("latency.hlog"), m, true)?;
    write_one(&dir.join("service.hlog"), m, false)
}

fn write_one(path: &Path, m: &Measurements, latency: bool) -> Result<(), LoadgenError> {
    let err = |e: &dyn std::fmt::Display| LoadgenError::results(path, e);
    let file = std::fs::File::create(path).map_err(|e| err(&e))?;
    let mut out = std::io::BufWriter::new(file);
    let mut ser = V2DeflateSerializer::new();
    // Start time: the run's measured phase, approximately (SystemTime now minus the elapsed).
    let start = SystemTime::now()
        .checked_sub(m.elapsed)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let what = if latency {
        "latency from intended start (coordinated-omission corrected)"
    } else {
        "service time from actual send"
    };
    let mut w = IntervalLogWriterBuilder::new()
        .add_comment(&format!(
            "kvstore loadgen: {what}, microseconds, one interval per second"
        ))
        .with_start_time(start)
        .with_base_time(start)
        .with_max_value_divisor(1000.0)
        .begin_log_with(&mut out, &mut ser)
        .map_err(|e| err(&e))?;
    for (s, slot) in m.seconds.iter().enumerate() {
        for k in &m.kinds {
            let stats = &slot[k.index()];
            let h = if latency {
                &stats.latency
            } else {
                &stats.service
            };
            if h.is_empty() {
                continue;
            }
            w.write_histogram(
                h,
                Duration::from_secs(s as u64),
                Duration::from_secs(1),
                Tag::new(k.name()),
            )
            .map_err(|e| err(&format!("{e:?}")))?;
        }
    }
    drop(w);
    out.flush().map_err(|e| err(&e))
}
