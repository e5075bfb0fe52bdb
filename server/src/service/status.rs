//! The one place node errors become gRPC statuses.
//!
//! | error | code | `kv-outcome` |
//! |---|---|---|
//! | invalid argument | INVALID_ARGUMENT (names field and limit) | failed |
//! | too few live replicas, nothing sent | UNAVAILABLE ("needed W=2 ..., 1 answered") | failed |
//! | replicas asked, every one refused before storing anything | UNAVAILABLE | failed |
//! | a replica acked, may have stored it, or had not answered (fewer than W acks) | DEADLINE_EXCEEDED | unknown |
//! | read: fewer than R answered before the deadline | DEADLINE_EXCEEDED | failed |
//! | node leaving | UNAVAILABLE (the client goes elsewhere) | failed |
//! | this node's clock unsafe to stamp writes (nothing sent) | UNAVAILABLE (the client goes elsewhere) | failed |
//! | clock skew refusal, leave of a node not up | FAILED_PRECONDITION | failed |
//! | admission budget spent (shed before doing anything) | RESOURCE_EXHAUSTED (names the limit) | failed |
//! | storage or other internal failure | INTERNAL | unknown for writes |
//!
//! The `kv-outcome` metadata is what the client uses to tell a definite failure from an
//! unknown outcome; reads carry `failed` (a read changes nothing).

use tonic::{Code, Status};

use crate::error::Error;

/// Metadata key telling whether a failed write may have been applied.
pub const OUTCOME_HEADER: &str = "kv-outcome";

/// Whether the request was a write (its outcome may be unknown) or a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Get or a NodeInternal call.
    Read,
    /// Put or Delete.
    Write,
}

/// Maps `err` to the status the client sees.
pub fn to_status(err: &Error, op: Op) -> Status {
    let (code, unknown) = match err {
        Error::InvalidArgument { .. } | Error::Config(_) => (Code::InvalidArgument, false),
        Error::Unavailable { .. } | Error::NodeLeaving { .. } | Error::ClockUnsafe { .. } => {
            (Code::Unavailable, false)
        }
        Error::NotEnoughReplicas { .. } if err.outcome_unknown() => (Code::DeadlineExceeded, true),
        Error::NotEnoughReplicas {
            timed_out: true, ..
        } => (Code::DeadlineExceeded, false),
        Error::NotEnoughReplicas { .. } => (Code::Unavailable, false),
        Error::Clock(_) | Error::Precondition(_) => (Code::FailedPrecondition, false),
        Error::Overloaded(_) => (Code::ResourceExhausted, false),
        Error::Peer { .. } => (Code::Unavailable, true),
        Error::Storage(_) | Error::Membership(_) | Error::Locked { .. } | Error::Io { .. } => {
            (Code::Internal, true)
        }
    };
    let mut status = Status::new(code, err.to_string());
    let outcome = if unknown && op == Op::Write {
        "unknown"
    } else {
        "failed"
    };
    status
        .metadata_mut()
        .insert(OUTCOME_HEADER, outcome.parse().expect("ascii"));
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(s: &Status) -> &str {
        s.metadata().get(OUTCOME_HEADER).unwrap().to_str().unwrap()
    }

    #[test]
    fn mapping_table() {
        let cases = [
            (
                Error::invalid("key", "empty"),
                Op::Write,
                Code::InvalidArgument,
                "failed",
            ),
            (
                Error::Unavailable {
                    needed: 2,
                    live: 1,
                    level: "QUORUM".into(),
                    kind: "W",
                },
                Op::Write,
                Code::Unavailable,
                "failed",
            ),
            (
                Error::NotEnoughReplicas {
                    needed: 2,
                    acked: 1,
                    level: "QUORUM".into(),
                    kind: "W",
                    timed_out: false,
                    maybe_applied: true,
                },
                Op::Write,
                Code::DeadlineExceeded,
                "unknown",
            ),
            (
                Error::NodeLeaving {
                    node: 3,
                    state: "leaving",
                },
                Op::Write,
                Code::Unavailable,
                "failed",
            ),
            (
                Error::NotEnoughReplicas {
                    needed: 2,
                    acked: 0,
                    level: "QUORUM".into(),
                    kind: "W",
                    timed_out: false,
                    maybe_applied: false,
                },
                Op::Write,
                Code::Unavailable,
                "failed",
            ),
            (
                Error::NotEnoughReplicas {
                    needed: 2,
                    acked: 0,
                    level: "QUORUM".into(),
                    kind: "W",
                    timed_out: true,
                    maybe_applied: true,
                },
                Op::Write,
                Code::DeadlineExceeded,
                "unknown",
            ),
            (
                Error::NotEnoughReplicas {
                    needed: 2,
                    acked: 1,
                    level: "QUORUM".into(),
                    kind: "R",
                    timed_out: true,
                    maybe_applied: false,
                },
                Op::Read,
                Code::DeadlineExceeded,
                "failed",
            ),
            // ALL with one replica failing fast while the others were still writing: no ack
            // yet, but the write may be stored (the defect: this was reported "failed").
            (
                Error::NotEnoughReplicas {
                    needed: 3,
                    acked: 0,
                    level: "ALL".into(),
                    kind: "W",
                    timed_out: false,
                    maybe_applied: true,
                },
                Op::Write,
                Code::DeadlineExceeded,
                "unknown",
            ),
            (
                Error::ClockUnsafe {
                    node: 3,
                    state: "unhealthy",
                    reason: "far".into(),
                },
                Op::Write,
                Code::Unavailable,
                "failed",
            ),
        ];
        for (err, op, code, want) in cases {
            let s = to_status(&err, op);
            assert_eq!(s.code(), code, "{err}");
            assert_eq!(outcome(&s), want, "{err}");
        }
        let s = to_status(
            &Error::Unavailable {
                needed: 2,
                live: 1,
                level: "QUORUM".into(),
                kind: "W",
            },
            Op::Write,
        );
        assert!(
            s.message().contains("needed W=2 replicas"),
            "{}",
            s.message()
        );
        assert!(s.message().contains("1 answered"), "{}", s.message());
    }
}
