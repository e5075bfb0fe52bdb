//! Synthetic histories: a seeded simulation of a 3-replica LWW store (W=2, R=2, some R=1
//! reads, unknown and failed outcomes, deletes, TTLs, a final phase), written as a real history
//! file. It exists to measure the checker on 1,000,000-operation histories and to test it at
//! scale, with optional injected faults whose class the checker must name.
//!
//! The simulation is deliberately simple (one shared clock, no message delays beyond a lagging
//! third replica): it is a workload for the checker, not a model of the server.

use std::io::Write;

use kvstore_proto::Version;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{CheckerError, HistoryWriter, OpKind, Outcome, Record};

/// A fault planted into an otherwise valid synthetic history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inject {
    /// Nothing: the history is valid.
    None,
    /// One replica of one written key ends with nothing stored (class `divergence`).
    Divergence,
    /// Every replica of one key ends with the state before its newest acknowledged put
    /// (class `lost_write`).
    LostWrite,
    /// One get returns a value id no put wrote (class `phantom_read`).
    Phantom,
}

/// Shape of a synthetic history.
#[derive(Clone, Debug)]
pub struct SynthConfig {
    /// Operations before the final phase.
    pub ops: u64,
    /// Distinct keys (a small number makes hot keys with many overlapping writes).
    pub keys: u32,
    /// RNG seed: the same config gives the same file.
    pub seed: u64,
    /// The planted fault.
    pub inject: Inject,
}

const REPLICAS: [&str; 3] = ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"];
const EPOCH_MS: u64 = 1_800_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Nothing,
    Tomb(Version),
    Val(u64, Version, Option<u64>), // value id, version, expires_at_ms
}

impl St {
    fn version(self) -> Option<Version> {
        match self {
            St::Nothing => None,
            St::Tomb(v) | St::Val(_, v, _) => Some(v),
        }
    }
}

fn newer(a: St, b: St) -> St {
    if b.version() > a.version() { b } else { a }
}

struct Key {
    name: String,
    replicas: [St; 3],
    /// A write still on its way to one replica: (replica, state).
    lagging: Option<(usize, St)>,
    prev_acked_put: St,
    last_acked_put: St,
}

/// Writes a synthetic history to `out`; returns the number of rows.
pub fn generate<W: Write>(cfg: &SynthConfig, out: W) -> Result<u64, CheckerError> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut w = HistoryWriter::new(out)?;
    let nkeys = cfg.keys.max(1);
    let mut keys: Vec<Key> = (0..nkeys)
        .map(|i| Key {
            name: format!("key{i:06}"),
            replicas: [St::Nothing; 3],
            lagging: None,
            prev_acked_put: St::Nothing,
            last_acked_put: St::Nothing,
        })
        .collect();
    let mut hlc_last = [0u64; 3];
    let mut t: u64 = 0;
    let mut op_id: u64 = 0;
    let mut next_value: u64 = 1;
    let mut phantom_pending = cfg.inject == Inject::Phantom;
    for n in 0..cfg.ops {
        t += rng.random_range(5_000..60_000); // ~30 us apart: ~30 ops in flight at 1 ms latency
        let invoke = t;
        let complete = invoke + rng.random_range(200_000..3_000_000);
        let stamp_ns = invoke + (complete - invoke) / 2;
        let node = rng.random_range(0..3usize);
        let ki = rng.random_range(0..nkeys) as usize;
        let key = &mut keys[ki];
        // Deliver the lagging write to its replica now and then.
        if let Some((r, s)) = key.lagging
            && rng.random_bool(0.7)
        {
            key.replicas[r] = newer(key.replicas[r], s);
            key.lagging = None;
        }
        let roll: f64 = rng.random();
        op_id += 1;
        let mut rec = Record {
            op_id,
            client: rng.random_range(0..16),
            node: REPLICAS[node].to_string(),
            kind: OpKind::Get,
            key: key.name.clone(),
            value_id: None,
            tombstone: false,
            outcome: Outcome::Ok,
            invoke_ns: invoke,
            complete_ns: complete,
            version: None,
            ttl_ms: None,
            expires_at_ms: None,
            replica: None,
        };
        if roll < 0.5 {
            // A write: put (90%) or delete.
            let phys = EPOCH_MS + stamp_ns / 1_000_000;
            let hlc = (phys << 16).max(hlc_last[node] + 1);
            hlc_last[node] = hlc;
            let v = Version::new(hlc, node as u32 + 1);
            let is_put = rng.random_bool(0.9);
            let st = if is_put {
                rec.kind = OpKind::Put;
                rec.value_id = Some(next_value);
                if rng.random_bool(0.1) {
                    rec.ttl_ms = Some(rng.random_range(50..2_000));
                }
                let exp = rec.ttl_ms.map(|ttl| v.physical_ms() + ttl);
                next_value += 1;
                St::Val(next_value - 1, v, exp)
            } else {
                rec.kind = OpKind::Delete;
                St::Tomb(v)
            };
            let o: f64 = rng.random();
            rec.outcome = if o < 0.97 {
                Outcome::Ok
            } else if o < 0.985 {
                Outcome::Unknown
            } else {
                Outcome::Fail
            };
            let applied = match rec.outcome {
                Outcome::Ok => true,
                Outcome::Unknown => rng.random_bool(0.5),
                Outcome::Fail => false,
            };
            if rec.outcome == Outcome::Ok {
                rec.version = Some(v);
            }
            if applied {
                if let Some((r, s)) = key.lagging.take() {
                    key.replicas[r] = newer(key.replicas[r], s);
                }
                let lag = rng.random_range(0..3usize);
                for (r, rep) in key.replicas.iter_mut().enumerate() {
                    if r != lag {
                        *rep = newer(*rep, st);
                    }
                }
                key.lagging = Some((lag, st));
            }
            if rec.outcome == Outcome::Ok && is_put {
                key.prev_acked_put = key.last_acked_put;
                key.last_acked_put = st;
            }
        } else {
            // A get: R=2 usually, R=1 sometimes (the source of stale reads).
            let a = rng.random_range(0..3usize);
            let mut s = key.replicas[a];
            if rng.random_bool(0.97) {
                let b = (a + rng.random_range(1..3usize)) % 3;
                s = newer(s, key.replicas[b]);
            }
            if rng.random_bool(0.01) {
                rec.outcome = Outcome::Fail;
            } else {
                let now_ms = EPOCH_MS + stamp_ns / 1_000_000;
                match s {
                    St::Val(_, v, Some(e)) if now_ms >= e => {
                        rec.tombstone = true; // absent with the expired value's version
                        rec.version = Some(v);
                    }
                    St::Val(x, v, e) => {
                        rec.value_id = Some(x);
                        rec.version = Some(v);
                        rec.expires_at_ms = e;
                    }
                    St::Tomb(v) => {
                        rec.tombstone = true;
                        rec.version = Some(v);
                    }
                    St::Nothing => {}
                }
                if phantom_pending && n >= cfg.ops / 2 {
                    phantom_pending = false;
                    rec.value_id = Some(u64::MAX - 1);
                    rec.tombstone = false;
                    rec.expires_at_ms = None;
                    rec.version = Some(Version::new(1, 1));
                }
            }
        }
        w.write(&rec)?;
    }
    // Quiescence: deliver everything, then read every key from every replica.
    let end = t + 1_000_000_000;
    let mut injected = false;
    let mut rows = cfg.ops;
    for (ki, key) in keys.iter_mut().enumerate() {
        if let Some((r, s)) = key.lagging.take() {
            key.replicas[r] = newer(key.replicas[r], s);
        }
        if !injected {
            match cfg.inject {
                Inject::Divergence if key.replicas[0] != St::Nothing => {
                    key.replicas[0] = St::Nothing;
                    injected = true;
                }
                Inject::LostWrite
                    if matches!(key.last_acked_put, St::Val(_, _, None))
                        && key.replicas[0] == key.last_acked_put =>
                {
                    key.replicas = [key.prev_acked_put; 3];
                    injected = true;
                }
                _ => {}
            }
        }
        let t0 = end + ki as u64 * 4_000_000;
        let cluster_state = key.replicas.iter().copied().fold(St::Nothing, newer);
        for (i, replica) in [None, Some(0), Some(1), Some(2)].into_iter().enumerate() {
            let ts = t0 + i as u64 * 1_000_000;
            let s = replica.map_or(cluster_state, |r: usize| key.replicas[r]);
            op_id += 1;
            rows += 1;
            let now_ms = EPOCH_MS + ts / 1_000_000;
            let mut rec = Record {
                op_id,
                client: 0,
                node: REPLICAS[0].to_string(),
                kind: OpKind::FinalRead,
                key: key.name.clone(),
                value_id: None,
                tombstone: false,
                outcome: Outcome::Ok,
                invoke_ns: ts,
                complete_ns: ts + 500_000,
                version: None,
                ttl_ms: None,
                expires_at_ms: None,
                replica: replica.map(|r| REPLICAS[r].to_string()),
            };
            match s {
                St::Val(_, v, Some(e)) if replica.is_none() && now_ms >= e => {
                    rec.tombstone = true;
                    rec.version = Some(v);
                }
                St::Val(x, v, e) => {
                    rec.value_id = Some(x);
                    rec.version = Some(v);
                    rec.expires_at_ms = e;
                }
                St::Tomb(v) => {
                    rec.tombstone = true;
                    rec.version = Some(v);
                }
                St::Nothing => {}
            }
            w.write(&rec)?;
        }
    }
    w.flush()?;
    Ok(rows)
}
