//! The live status line, once a second: elapsed time, ops/s over the last second, p99 of the
//! last complete second, errors so far, node states and the fault in force. Drawn with
//! indicatif on a terminal; printed as plain lines on stderr otherwise (CI logs).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::cluster::faults::FaultLog;
use crate::measure::Aggregate;

/// Where status lines go.
#[derive(Debug)]
pub struct StatusLine {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl StatusLine {
    /// A spinner on a terminal, plain lines otherwise; nothing when `quiet`.
    pub fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b
        });
        Self { bar, quiet }
    }

    /// Shows `msg` (replacing the previous line on a terminal).
    pub fn show(&self, msg: &str) {
        match &self.bar {
            Some(b) => {
                b.set_message(msg.to_string());
                b.tick();
            }
            None if !self.quiet => eprintln!("{msg}"),
            None => {}
        }
    }

    /// Prints a line that stays (above the spinner).
    pub fn println(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(msg),
            None if !self.quiet => eprintln!("{msg}"),
            None => {}
        }
    }

    /// Removes the spinner.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Shows the run's status every second until `done` is set.
pub async fn run_status(
    line: Arc<StatusLine>,
    agg: Arc<Aggregate>,
    faults: Arc<FaultLog>,
    planned: Option<Duration>,
    done: Arc<AtomicBool>,
) {
    let mut last_ok = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick.tick().await;
    while !done.load(Ordering::Relaxed) {
        tick.tick().await;
        let now = Instant::now();
        let origin = agg.origin();
        let live = agg.live(now);
        let (phase, elapsed) = if now < origin {
            (
                "warm-up",
                -(origin.saturating_duration_since(now).as_secs_f64()),
            )
        } else {
            ("run", now.duration_since(origin).as_secs_f64())
        };
        let ops = live.ok.saturating_sub(last_ok);
        last_ok = live.ok;
        line.show(&format!(
            "[{phase}] {elapsed:6.1}s{} | {ops:>7} ops/s | p99 {:>8.2} ms | errors {:>5} | {}",
            planned
                .map(|p| format!("/{}s", p.as_secs()))
                .unwrap_or_default(),
            live.p99_us as f64 / 1000.0,
            live.errors,
            faults.describe()
        ));
    }
}
