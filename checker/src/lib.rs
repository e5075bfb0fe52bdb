//! The kvstore history checker: the project's correctness verdict.
//!
//! loadgen records every operation of a run as a [`history`] row (CSV, streamed), tags every
//! value it writes with a unique [`value_id`], and after healing all faults appends the final
//! reads of every touched key from every replica. [`check`] then verifies, per key, that the
//! replicas converged on one last-write-wins winner that no acknowledged write is newer than,
//! and that every read observed something that was really written, and, with the history's
//! [`clock`] record, that versions agree with real time (see [`rules`] for the exact rules). The result is a [`Report`]: counts, and each anomaly with the operations involved and
//! their CSV line numbers.
//!
//! The rules are pure functions over parsed records: no I/O, no clock. Reading files, printing
//! and exit codes belong to the `checker` binary. This crate does not talk to a cluster and does
//! not decide what loadgen runs; [`synth`] only generates synthetic histories for benchmarks and
//! tests of the checker itself.

#![warn(missing_docs)]

pub mod clock;
mod error;
mod fasthash;
pub mod history;
pub mod value_id;

pub use clock::{ClockAction, ClockFault, ClockRecord};
pub use error::CheckerError;
pub use history::{HistoryReader, HistoryWriter, OpKind, Outcome, Record};
mod model;
mod report;
pub mod rules;

pub use model::OutcomeCounts;
pub use report::{Anomaly, AnomalyClass, OpRef, Report, Staleness, Summary};
pub use rules::{CheckConfig, Checker, check, parse_duration_ns};
pub mod synth;
