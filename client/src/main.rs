//! `kv`: the command-line client of a kvstore cluster.
//!
//! A thin layer over [`kvstore_client::Client`]: parses flags (clap), reads values from the
//! command line, a file or stdin, prints results for humans and maps errors to exit codes (see
//! `EXIT_CODES`). All cluster logic lives in the library.

mod cli;

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use kvstore_client::{
    Client, ClientConfig, ClientError, ConsistencyLevel, ReadOptions, Version, WriteOptions, pb,
};

use crate::cli::duration::parse_duration;
use crate::cli::exit::{Failure, exit_code};
use crate::cli::output;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  get: the key does not exist (never written, deleted or expired)
  2  usage error or invalid argument (bad flag, bad value, refused by the server as invalid)
  3  unavailable or unknown outcome: not enough replicas, no server reachable, or a write
     whose outcome is unknown (it may have been applied; read the key to find out)
  4  any other failure (authentication, server error, local I/O)";

/// Command-line client for a kvstore cluster.
#[derive(Debug, Parser)]
#[command(name = "kv", version, about, after_help = EXIT_CODES)]
struct Args {
    /// Cluster nodes to contact first (host:port); repeat the flag or separate with commas.
    /// The ring is fetched from the first that answers.
    #[arg(
        long,
        short = 's',
        env = "KV_SEEDS",
        value_delimiter = ',',
        required = true,
        value_name = "ADDR[,ADDR...]"
    )]
    seeds: Vec<String>,

    /// Consistency level for this request: one, quorum or all (default: the nodes' R or W).
    #[arg(long, short = 'c', value_parser = parse_consistency)]
    consistency: Option<ConsistencyLevel>,

    /// Cluster secret, needed for ring, status and leave when the cluster has one.
    #[arg(long, env = "KV_SECRET", hide_env_values = true)]
    secret: Option<String>,

    /// TLS: the CA the nodes' certificates chain to (the cluster serves TLS).
    #[arg(long, env = "KV_CA", value_name = "FILE")]
    ca: Option<PathBuf>,

    /// TLS: this client's certificate, for clusters that require one (--client-cert-auth).
    #[arg(long, env = "KV_CERT", value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,

    /// TLS: the private key of --cert.
    #[arg(long, env = "KV_KEY", value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,

    /// Deadline for the whole request, retries included (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,

    /// Print versions, expiry and the coordinating node on stderr.
    #[arg(long, short = 'v')]
    verbose: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the value of KEY on stdout (exactly its bytes).
    Get {
        /// The key.
        key: String,
    },
    /// Store a value under KEY: given as VALUE, read from stdin when VALUE is '-', or from
    /// --file PATH (for large or binary values).
    Put {
        /// The key.
        key: String,
        /// The value; '-' reads it from stdin.
        #[arg(conflicts_with = "file")]
        value: Option<String>,
        /// Read the value from this file.
        #[arg(long, short = 'f')]
        file: Option<PathBuf>,
        /// Time to live (e.g. 10s, 500ms, 2m); the key expires after it.
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
    },
    /// Delete KEY (writes a versioned tombstone).
    Delete {
        /// The key.
        key: String,
    },
    /// Show the ring: members, states and the share of tokens each one owns.
    Ring,
    /// Show one node's status, or every member's when NODE_ADDR is omitted.
    Status {
        /// host:port of the node.
        node_addr: Option<String>,
    },
    /// Ask node NODE_ID to hand its ranges over and leave the cluster.
    Leave {
        /// The node's id (see `kv ring`).
        node_id: u32,
    },
    /// Repair now: each node (or --node ID only) exchanges hash trees with the other replicas
    /// of its arcs and copies the newer entries both ways; prints each exchange and a summary.
    Repair {
        /// Only this node runs the repair (see `kv ring`); every live member in turn otherwise.
        #[arg(long, value_name = "ID")]
        node: Option<u32>,
        /// Only arcs meeting this token range, START:END (exclusive start, inclusive end, as
        /// `kv ring` prints tokens); repeatable.
        #[arg(long, value_name = "START:END", value_parser = parse_range)]
        range: Vec<TokenRangeArg>,
    },
    /// Remove the dead node NODE_ID for good: the live members copy its ranges to their new
    /// owners, so every key has N copies again (refused while the node is not down).
    Removenode {
        /// The dead node's id (see `kv ring`).
        node_id: u32,
    },
}

/// A token range given on the command line.
#[derive(Debug, Clone, Copy)]
struct TokenRangeArg {
    start: u64,
    end: u64,
}

fn parse_range(s: &str) -> Result<TokenRangeArg, String> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not START:END (two tokens, 0 to 2^64-1)"))?;
    let token = |t: &str| {
        t.trim()
            .parse::<u64>()
            .map_err(|e| format!("{t:?} in {s:?} is not a token (0 to 2^64-1): {e}"))
    };
    Ok(TokenRangeArg {
        start: token(a)?,
        end: token(b)?,
    })
}

fn parse_consistency(s: &str) -> Result<ConsistencyLevel, String> {
    s.parse()
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kv: cannot start the async runtime: {e}");
            return ExitCode::from(4);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let (code, message) = exit_code(&failure);
            if !message.is_empty() {
                eprintln!("kv: {message}");
            }
            ExitCode::from(code)
        }
    }
}

async fn run(mut args: Args) -> Result<(), Failure> {
    // Local input problems are reported before any network traffic.
    let mut put_value = match &mut args.command {
        Command::Put {
            value, file, ttl, ..
        } => {
            if ttl.is_some_and(|d| d.as_millis() == 0) {
                return Err(Failure::Usage(
                    "--ttl: must be at least 1ms (omit it for no expiry)".into(),
                ));
            }
            Some(read_value(value.take(), file.take())?)
        }
        _ => None,
    };
    let tls = match (&args.ca, &args.cert, &args.key) {
        (Some(ca), cert, key) => Some(kvstore_client::ClientTls::from_files(
            ca,
            cert.as_deref().zip(key.as_deref()),
        )?),
        (None, None, None) => None,
        (None, _, _) => {
            return Err(Failure::Usage(
                "--cert/--key need --ca (the CA the nodes' certificates chain to)".into(),
            ));
        }
    };
    let config = ClientConfig {
        tls,
        request_timeout: args.timeout,
        attempt_timeout: args.timeout.min(ClientConfig::default().attempt_timeout),
        cluster_secret: args.secret.clone(),
        ..ClientConfig::with_seeds(args.seeds.iter().map(|s| s.trim().to_string()))
    };
    let client = Client::connect(config).await?;
    let mut stdout = std::io::stdout().lock();
    match args.command {
        Command::Get { key } => {
            let opts = ReadOptions {
                consistency: args.consistency,
            };
            let got = client.get(&key, opts).await?;
            if args.verbose {
                eprintln!(
                    "version {} expires {} coordinator {}",
                    fmt_version(got.version),
                    output::expiry(got.expires_at_ms),
                    got.coordinator
                );
            }
            let Some(value) = got.value else {
                return Err(Failure::NotFound(match got.version {
                    Some(v) => format!("{key:?}: not found (deleted or expired, version {v})"),
                    None => format!("{key:?}: not found"),
                }));
            };
            stdout.write_all(&value).context("writing the value")?;
            if std::io::stdout().is_terminal() && !value.ends_with(b"\n") {
                stdout.write_all(b"\n").context("writing the value")?;
            }
        }
        Command::Put { key, ttl, .. } => {
            let value = put_value.take().unwrap_or_default();
            let ttl_ms = ttl.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let len = value.len();
            let opts = WriteOptions {
                consistency: args.consistency,
                ttl_ms,
            };
            let put = client.put(&key, value, opts).await?;
            writeln!(
                stdout,
                "OK {key:?} ({len} bytes) version {} via {}",
                put.version, put.coordinator
            )
            .context("writing the result")?;
        }
        Command::Delete { key } => {
            let opts = WriteOptions {
                consistency: args.consistency,
                ttl_ms: None,
            };
            let del = client.delete(&key, opts).await?;
            writeln!(
                stdout,
                "OK deleted {key:?} version {} via {}",
                del.version, del.coordinator
            )
            .context("writing the result")?;
        }
        Command::Ring => {
            let ring = client.ring().await?;
            stdout
                .write_all(output::ring_table(&ring).as_bytes())
                .context("writing the ring")?;
        }
        Command::Status { node_addr } => {
            let addrs = match node_addr {
                Some(a) => vec![a],
                None => live_members(&client.ring().await?),
            };
            let mut failed = None;
            for addr in addrs {
                match client.status(&addr).await {
                    Ok(status) => stdout
                        .write_all(output::status_block(&status).as_bytes())
                        .context("writing the status")?,
                    Err(e) => {
                        writeln!(stdout, "node {addr}: {e}\n").context("writing the status")?;
                        failed = Some(e);
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e.into());
            }
        }
        Command::Leave { node_id } => {
            let left = client.leave(node_id).await.map_err(|error| {
                if error.is_unknown_outcome() {
                    Failure::LeaveUnconfirmed { node_id, error }
                } else {
                    Failure::Client(error)
                }
            })?;
            writeln!(
                stdout,
                "OK node {node_id} left the cluster; {} keys handed over",
                left.keys_moved
            )
            .context("writing the result")?;
        }
        Command::Repair { node, range } => {
            let ring = client.ring().await?;
            let members: Vec<(u32, String)> = {
                let mut m: Vec<(u32, String)> = ring
                    .members
                    .iter()
                    .filter(|m| node.is_none_or(|id| id == m.id))
                    .filter(|m| node.is_some() || m.state == pb::MemberState::Up as i32)
                    .map(|m| (m.id, m.address.clone()))
                    .collect();
                m.sort();
                m
            };
            if let (Some(id), true) = (node, members.is_empty()) {
                let known: Vec<u32> = ring.members.iter().map(|m| m.id).collect();
                return Err(Failure::Client(
                    kvstore_client::ClientError::InvalidArgument(format!(
                        "--node: {id} is not a member (members: {known:?})"
                    )),
                ));
            }
            let ranges: Vec<pb::TokenRange> = range
                .iter()
                .map(|r| pb::TokenRange {
                    start: r.start,
                    end: r.end,
                })
                .collect();
            let mut incomplete = Vec::new();
            for (id, addr) in members {
                let mut lines = Vec::new();
                let summary = client
                    .repair(&addr, ranges.clone(), |p| {
                        lines.push(output::repair_line(p))
                    })
                    .await;
                for l in lines {
                    writeln!(stdout, "{l}").context("writing the progress")?;
                }
                match summary {
                    Ok(s) => {
                        writeln!(stdout, "{}", output::repair_summary(&s))
                            .context("writing the result")?;
                        if !s.complete {
                            incomplete.push(id);
                        }
                    }
                    Err(e) => {
                        writeln!(stdout, "node {id} at {addr}: repair failed: {e}")
                            .context("writing the result")?;
                        incomplete.push(id);
                    }
                }
            }
            if !incomplete.is_empty() {
                return Err(Failure::Client(
                    kvstore_client::ClientError::UnknownOutcome(format!(
                        "repair incomplete on node(s) {incomplete:?}: some arcs were not \
                         compared with every replica (a replica down, a tree still building, \
                         or the key limit); run kv repair again"
                    )),
                ));
            }
        }
        Command::Removenode { node_id } => {
            let r = client.remove_node(node_id).await.map_err(|error| {
                if error.is_unknown_outcome() {
                    Failure::RemoveUnconfirmed { node_id, error }
                } else {
                    Failure::Client(error)
                }
            })?;
            writeln!(
                stdout,
                "OK node {node_id} removed; members {:?} copied {} entries to new owners{}",
                r.members,
                r.keys_copied,
                if r.keys_failed > 0 {
                    format!(
                        ", {} not taken (run kv removenode {node_id} again)",
                        r.keys_failed
                    )
                } else {
                    String::new()
                }
            )
            .context("writing the result")?;
            for e in &r.errors {
                writeln!(stdout, "  not asked: {e}").context("writing the result")?;
            }
            if r.keys_failed > 0 || !r.errors.is_empty() {
                return Err(Failure::Client(
                    kvstore_client::ClientError::UnknownOutcome(format!(
                        "removal of node {node_id} incomplete: run kv removenode {node_id} again"
                    )),
                ));
            }
        }
    }
    Ok(())
}

/// Addresses of the members that have not left, in id order.
fn live_members(ring: &pb::RingStateResponse) -> Vec<String> {
    let mut members: Vec<&pb::Member> = ring
        .members
        .iter()
        .filter(|m| m.state != pb::MemberState::Left as i32)
        .collect();
    members.sort_by_key(|m| m.id);
    members.into_iter().map(|m| m.address.clone()).collect()
}

/// The value to put: the argument, stdin for `-`, or a file. Refuses values larger than the
/// gRPC limit before sending anything.
fn read_value(value: Option<String>, file: Option<PathBuf>) -> Result<Bytes, Failure> {
    let limit = kvstore_proto::limits::GRPC_MESSAGE_LIMIT;
    let read_bounded = |r: &mut dyn Read, what: &str| -> Result<Bytes, Failure> {
        let mut buf = Vec::new();
        r.take(limit as u64 + 1)
            .read_to_end(&mut buf)
            .with_context(|| format!("reading the value from {what}"))?;
        if buf.len() > limit {
            return Err(Failure::Usage(format!(
                "value from {what}: larger than the {limit}-byte message limit"
            )));
        }
        Ok(Bytes::from(buf))
    };
    match (value, file) {
        (Some(v), None) if v == "-" => read_bounded(&mut std::io::stdin().lock(), "stdin"),
        (Some(v), None) => Ok(Bytes::from(v.into_bytes())),
        (None, Some(path)) => {
            let mut f = std::fs::File::open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            read_bounded(&mut f, &path.display().to_string())
        }
        (None, None) => Err(Failure::Usage(
            "put: give a VALUE, '-' to read it from stdin, or --file PATH".into(),
        )),
        (Some(_), Some(_)) => Err(Failure::Usage(
            "put: give either VALUE or --file, not both".into(),
        )),
    }
}

fn fmt_version(v: Option<Version>) -> String {
    v.map_or_else(|| "none".into(), |v| v.to_string())
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Client(e)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Local(e)
    }
}
