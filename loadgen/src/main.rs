//! `loadgen`: runs a scenario against kvstore (launching its own local cluster unless the
//! scenario names endpoints) and leaves its results under `results/<scenario>/<UTC time>/`.
//!
//! Subcommands: `run`, `compare`, `report` (runs side by side, any store), `check` (validate
//! scenarios), `selftest` (loadgen's own ceiling), and two hidden ones it starts itself: `node <kvstore-server flags>` (a cluster node
//! from the linked server library, so a fresh clone needs only this binary) and `echo-server`
//! (the gRPC ceiling's server).
//!
//! Exit status of `run`: 0 done (and, for a recorded history, the checker found it valid), 1
//! the checker found violations, 2 the run itself failed.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use loadgen::compare::{Tolerance, compare_paths, parse_fraction};
use loadgen::run::{RunOptions, run};
use loadgen::scenario::Scenario;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Scenario-driven load generator and fault injector for kvstore"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a scenario and writes its results. With `record_history`, the checker's verdict
    /// ends the summary and goes to checker.json; exit 1 on violations, 2 on errors.
    Run {
        /// The scenario TOML file.
        scenario: PathBuf,
        /// Where run directories go.
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// Start nodes from this kvstore-server binary instead of `loadgen node`.
        #[arg(long, value_name = "PATH")]
        server_bin: Option<PathBuf>,
        /// Overrides the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// No live status line.
        #[arg(long)]
        quiet: bool,
        /// TLS to an existing cluster (`endpoints`): the CA its nodes' certificates chain to.
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// TLS: the client certificate, for clusters that require one.
        #[arg(long, value_name = "FILE", requires = "key")]
        cert: Option<PathBuf>,
        /// TLS: the private key of --cert.
        #[arg(long, value_name = "FILE", requires = "cert")]
        key: Option<PathBuf>,
        /// Runs the scenario against this store instead of the one it names: kvstore, redis
        /// or etcd (started from `redis-server` / `etcd` on PATH).
        #[arg(long, value_name = "STORE")]
        target: Option<loadgen::scenario::StoreKind>,
        /// Overrides the scenario's measured duration (seconds; replaces an operation count).
        #[arg(long, value_name = "SECONDS")]
        duration: Option<u64>,
    },
    /// Compares a run with a baseline; exits 1 when efficiency or p99 regress beyond the
    /// tolerance.
    Compare {
        /// Baseline: a summary.csv, a run directory, or a directory of runs (newest used).
        baseline: PathBuf,
        /// The run: same forms.
        run: PathBuf,
        /// Allowed relative drop of efficiency (and rise of p99 unless --p99-tolerance).
        #[arg(long, default_value = "25%")]
        tolerance: String,
        /// Allowed relative rise of overall p99 in echo units (p99 x echo ops/s; raw p99 when
        /// either run has no echo) [default: --tolerance].
        #[arg(long)]
        p99_tolerance: Option<String>,
    },
    /// Shows finished runs side by side (ops/s, p50, p99, p99.9, errors, efficiency, server
    /// CPU per operation when the run has a nodes.csv) and draws one comparison plot.
    Report {
        /// Run directories (or scenario directories: their newest run).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Where comparison.csv and comparison.png go.
        #[arg(long, default_value = "results/comparison")]
        out: PathBuf,
    },
    /// Validates scenario files without running them.
    Check {
        /// Scenario files.
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
    /// Measures loadgen's own ceiling: operations generated and recorded per second on one
    /// core, with no network.
    Selftest {
        /// Seconds to measure.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
    /// Serves the gRPC echo service (started by `run` for the ceiling).
    #[command(hide = true)]
    EchoServer {
        /// Address to bind; prints `listening on ADDR`.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
}

fn main() -> ExitCode {
    // `loadgen node <flags>` is a kvstore node: hand every flag to the server's own CLI.
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "node") {
        args.remove(1);
        args[0] = OsString::from("kvstore-server");
        return node_main(args);
    }
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs a kvstore node in this process.
fn node_main(args: Vec<OsString>) -> ExitCode {
    kvstore_server::cli::main(args)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run {
            scenario,
            results,
            server_bin,
            seed,
            quiet,
            ca,
            cert,
            key,
            target,
            duration,
        } => {
            // Partitions need a network namespace of the run's own: run again inside one.
            if !loadgen::netns::inside()
                && loadgen::scenario::Scenario::load(&scenario)
                    .is_ok_and(|s| loadgen::netns::needs_namespace(&s))
            {
                let code = loadgen::netns::reexec().map_err(anyhow::Error::msg)?;
                return Ok(ExitCode::from(code));
            }
            let exe = std::env::current_exe().context("cannot find loadgen's own executable")?;
            let tls = match (&ca, &cert) {
                (Some(ca), _) => Some(kvstore_client::ClientTls::from_files(
                    ca,
                    cert.as_deref().zip(key.as_deref()),
                )?),
                (None, Some(_)) => anyhow::bail!("--cert/--key need --ca"),
                (None, None) => None,
            };
            let opts = RunOptions {
                scenario,
                results_root: results,
                exe,
                server_bin,
                seed,
                quiet,
                tls,
                target,
                duration_s: duration,
            };
            let rt = runtime()?;
            let cancel = Arc::new(AtomicBool::new(false));
            let c2 = cancel.clone();
            rt.spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("\nloadgen: interrupted, stopping every process it started");
                    c2.store(true, Ordering::Relaxed);
                }
            });
            let outcome = rt.block_on(run(&opts, cancel));
            rt.shutdown_timeout(Duration::from_secs(5));
            let outcome = outcome?;
            println!("{}", outcome.report);
            // A recorded history with violations fails the run (1, like `checker verify`).
            Ok(match &outcome.verdict {
                Some(v) if !v.valid => ExitCode::from(1),
                _ => ExitCode::SUCCESS,
            })
        }
        Command::Compare {
            baseline,
            run,
            tolerance,
            p99_tolerance,
        } => {
            let efficiency = parse_fraction(&tolerance).map_err(anyhow::Error::msg)?;
            let p99 = match p99_tolerance {
                Some(t) => parse_fraction(&t).map_err(anyhow::Error::msg)?,
                None => efficiency,
            };
            let (bp, rp, c) = compare_paths(&baseline, &run, Tolerance { efficiency, p99 })?;
            println!("baseline: {}\nrun:      {}\n", bp.display(), rp.display());
            print!("{}", c.table);
            if c.regressions.is_empty() {
                println!(
                    "\nPASS: within tolerance (efficiency -{:.0}%, p99 +{:.0}%)",
                    efficiency * 100.0,
                    p99 * 100.0
                );
                Ok(ExitCode::SUCCESS)
            } else {
                for r in &c.regressions {
                    println!("\nREGRESSION: {r}");
                }
                Ok(ExitCode::from(1))
            }
        }
        Command::Report { runs, out } => {
            use loadgen::results::side_by_side;
            let rows = runs
                .iter()
                .map(|r| side_by_side::load(r))
                .collect::<Result<Vec<_>, _>>()?;
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            side_by_side::write_csv(&out.join("comparison.csv"), &rows)?;
            side_by_side::plot(&out.join("comparison.png"), &rows)?;
            print!("{}", side_by_side::table(&rows));
            println!(
                "\n{}\n{}",
                out.join("comparison.csv").display(),
                out.join("comparison.png").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { scenarios } => {
            let mut bad = 0;
            for s in &scenarios {
                match Scenario::load(s) {
                    Ok(sc) => println!("ok   {} ({})", s.display(), sc.name),
                    Err(e) => {
                        bad += 1;
                        println!("FAIL {e}");
                    }
                }
            }
            Ok(if bad == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Selftest { seconds } => {
            let w = loadgen::scenario::WorkloadSpec::default();
            let r = loadgen::selftest::run(&w, Duration::from_secs(seconds.max(1)));
            println!(
                "loadgen selftest (generate zipfian 50/50 read/update 1 KiB + record latency, one thread, no network):\n  {} ops in {:.2} s wall, {:.2} s CPU\n  {:.0} ops/s per core (per CPU second); {:.0} ops/s wall clock",
                r.ops,
                r.seconds,
                r.cpu_seconds,
                r.ops_per_cpu_sec(),
                r.ops_per_sec()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::EchoServer { listen } => {
            let rt = runtime()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("cannot bind {listen}"))?;
                println!("listening on {}", listener.local_addr()?);
                loadgen::echo::serve(listener)
                    .await
                    .context("echo server failed")
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
