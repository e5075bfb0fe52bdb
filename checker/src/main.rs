//! `checker`: the project's correctness verdict on a recorded history.
//!
//! - `checker verify history.csv [--json report.json] [--max-clock-offset 500ms]
//!   [--tombstone-grace 1h] [--show 20] [--clock history.clock.json]`
//!   reads the history's clock record (the sidecar next to it, or `--clock`) when there is one,
//!   prints the summary, the count per anomaly class and the listed anomalies with their CSV
//!   lines; exit 0 = valid, 1 = violations found, 2 = unreadable input (line and column named).
//! - `checker synth out.csv --ops N --keys K --seed S [--inject CLASS]` writes a synthetic
//!   history (for measuring and testing the checker itself).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use kvstore_checker::synth::{Inject, SynthConfig};
use kvstore_checker::{CheckConfig, Checker, ClockRecord, HistoryReader, parse_duration_ns};

#[derive(Parser)]
#[command(
    name = "checker",
    about = "Verifies kvstore histories for LWW convergence"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Verify a history; exit 0 valid, 1 violations, 2 unreadable input.
    Verify {
        /// The history CSV written by loadgen.
        history: PathBuf,
        /// Also write the full report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Largest clock difference between nodes and loadgen (ns, us, ms, s). [default: the
        /// clock record's max_clock_offset_ms, else 500ms]
        #[arg(long, value_parser = parse_duration_ns)]
        max_clock_offset: Option<u64>,
        /// The history's clock record (wall-clock anchor, clock faults). [default:
        /// history.clock.json next to the history, when it exists]
        #[arg(long)]
        clock: Option<PathBuf>,
        /// The servers' tombstone grace period: before it passed, a tombstone must still exist.
        #[arg(long, default_value = "1h", value_parser = parse_duration_ns)]
        tombstone_grace: u64,
        /// Anomalies printed per class (all are counted; the JSON lists up to 1000 per class).
        #[arg(long, default_value_t = 20)]
        show: usize,
    },
    /// Write a synthetic history (seeded simulation of a 3-replica LWW store).
    Synth {
        /// Output CSV path.
        out: PathBuf,
        /// Operations before the final phase.
        #[arg(long, default_value_t = 1_000_000)]
        ops: u64,
        /// Distinct keys.
        #[arg(long, default_value_t = 1000)]
        keys: u32,
        /// RNG seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// A fault to plant.
        #[arg(long, value_enum, default_value_t = InjectArg::None)]
        inject: InjectArg,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum InjectArg {
    None,
    Divergence,
    LostWrite,
    Phantom,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Verify {
            history,
            json,
            max_clock_offset,
            clock,
            tombstone_grace,
            show,
        } => {
            let clock = match read_clock(&history, clock.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("checker: {e:#}");
                    return ExitCode::from(2);
                }
            };
            let offset = max_clock_offset
                .or(clock.as_ref().map(|c| c.max_clock_offset_ms * 1_000_000))
                .unwrap_or(CheckConfig::default().max_clock_offset_ns);
            verify(
                &history,
                json.as_deref(),
                CheckConfig {
                    max_clock_offset_ns: offset,
                    tombstone_grace_ns: tombstone_grace,
                    clock,
                    ..CheckConfig::default()
                },
                show,
            )
        }
        Cmd::Synth {
            out,
            ops,
            keys,
            seed,
            inject,
        } => match synth(&out, ops, keys, seed, inject) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("checker synth: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

fn verify(
    path: &std::path::Path,
    json: Option<&std::path::Path>,
    cfg: CheckConfig,
    show: usize,
) -> ExitCode {
    let started = Instant::now();
    let report = match read_and_check(path, cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("checker: {}: {e:#}", path.display());
            return ExitCode::from(2);
        }
    };
    print!("{}", report.render_text(show));
    println!("verified in {:.3} s", started.elapsed().as_secs_f64());
    if let Some(j) = json {
        let res = File::create(j).map_err(anyhow::Error::from).and_then(|f| {
            let mut w = BufWriter::new(f);
            serde_json::to_writer_pretty(&mut w, &report)?;
            w.flush()?;
            Ok(())
        });
        if let Err(e) = res {
            eprintln!("checker: writing {}: {e:#}", j.display());
            return ExitCode::from(2);
        }
    }
    if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The clock record: `explicit` (must exist), else the history's sidecar if there is one.
fn read_clock(
    history: &std::path::Path,
    explicit: Option<&std::path::Path>,
) -> anyhow::Result<Option<ClockRecord>> {
    match explicit {
        None => Ok(ClockRecord::read_sidecar(history)?),
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let r = serde_json::from_str(&text).with_context(|| format!("{}", p.display()))?;
            Ok(Some(r))
        }
    }
}

fn read_and_check(
    path: &std::path::Path,
    cfg: CheckConfig,
) -> anyhow::Result<kvstore_checker::Report> {
    let f = File::open(path).context("cannot open")?;
    let mut reader = HistoryReader::new(BufReader::with_capacity(1 << 20, f))?;
    let mut checker = Checker::new(cfg);
    while let Some((line, rec)) = reader.next_record()? {
        checker.add(line, rec)?;
    }
    Ok(checker.finish()?)
}

fn synth(
    out: &std::path::Path,
    ops: u64,
    keys: u32,
    seed: u64,
    inject: InjectArg,
) -> anyhow::Result<()> {
    let inject = match inject {
        InjectArg::None => Inject::None,
        InjectArg::Divergence => Inject::Divergence,
        InjectArg::LostWrite => Inject::LostWrite,
        InjectArg::Phantom => Inject::Phantom,
    };
    let f = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let rows = kvstore_checker::synth::generate(
        &SynthConfig {
            ops,
            keys,
            seed,
            inject,
        },
        BufWriter::with_capacity(1 << 20, f),
    )?;
    println!("wrote {rows} rows to {}", out.display());
    Ok(())
}
