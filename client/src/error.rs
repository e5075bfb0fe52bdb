//! The client's error type, and the one place where a gRPC [`tonic::Status`] becomes a
//! [`ClientError`].
//!
//! The distinction that matters most is between a *definite* failure (the request was not
//! applied: it never left this process, or a server said so) and an *unknown outcome* (a write
//! reached a server and may have been applied by some replicas: a timeout, a lost connection
//! after sending, or a server reporting `kv-outcome: unknown`). The history checker relies on it,
//! so the rule is conservative: a write failure is definite only when we can prove it. Reads are
//! idempotent, so for them the same situations are merely retryable.
//!
//! This module decides nothing about *when* to retry; it only classifies one failed attempt into
//! a [`Disposition`] that the retry loop in `client.rs` acts on.

use std::error::Error as _;

/// Response metadata key a server sets on a failed write to say whether it may have been
/// applied (`unknown`) or certainly was not (`failed`).
pub const OUTCOME_HEADER: &str = "kv-outcome";

/// Coarse classes of failure, as loadgen counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Not enough replicas were reachable; nothing was written.
    Unavailable,
    /// The request may or may not have been applied.
    UnknownOutcome,
    /// Anything else (bad input, authentication, internal errors).
    Other,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The request was refused as malformed; nothing was written.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Fewer live replicas than the consistency level needs; nothing was written.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The write may have been applied by some replicas (timeout, lost connection after the
    /// request was sent, or fewer than W acknowledgements before the deadline).
    #[error("unknown outcome: {0}")]
    UnknownOutcome(String),
    /// No server could be reached at all (nothing was sent).
    #[error("no server reachable: {0}")]
    NoServers(String),
    /// The cluster refused the caller's credentials.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// Any other definite failure reported by a server.
    #[error("{code:?}: {message}")]
    Server {
        /// The gRPC status code.
        code: tonic::Code,
        /// The server's message.
        message: String,
    },
}

impl ClientError {
    /// Whether the operation may have taken effect.
    pub fn is_unknown_outcome(&self) -> bool {
        matches!(self, Self::UnknownOutcome(_))
    }

    /// The class loadgen counts this error under.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Unavailable(_) | Self::NoServers(_) => ErrorKind::Unavailable,
            Self::UnknownOutcome(_) => ErrorKind::UnknownOutcome,
            _ => ErrorKind::Other,
        }
    }
}

/// Whether the failed request could have changed data: decides if "sent and lost" is an unknown
/// outcome (writes) or just a reason to ask another node (reads, operator calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Get, ring, status, local read: idempotent.
    Read,
    /// Put, delete, leave: retrying one that may have been applied is not silent-safe.
    Write,
}

/// What the retry loop may do after one failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// The request never reached a server (connection refused or connect timeout): nothing was
    /// applied; the node is probably down, so try another one.
    NotSent,
    /// A server definitely did not apply it, but a later attempt or another coordinator may
    /// succeed (not enough live replicas, node leaving or not serving, overloaded).
    /// `refresh_ring` asks for a fresh ring first: the refusal hints at a membership change.
    RetryDefinite {
        /// Whether the refusal suggests our ring is stale.
        refresh_ring: bool,
    },
    /// The request reached a server and may have been applied. Final for writes; for reads
    /// a reason to try elsewhere.
    MaybeApplied,
    /// Definite, and retrying cannot help (bad input, bad credentials).
    Final,
}

/// One failed attempt, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Classified {
    /// What the retry loop may do next.
    pub disposition: Disposition,
    /// The error to report if this attempt is the last one.
    pub error: ClientError,
}

/// Whether the error chain of `status` shows the failure happened while connecting, i.e.
/// before any byte of the request was sent. tonic wraps connector failures in
/// [`tonic::ConnectError`] and keeps the original error as the status's source.
fn failed_while_connecting(status: &tonic::Status) -> bool {
    let mut source = status.source();
    while let Some(err) = source {
        if err.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Whether `status` was produced locally by the transport (a broken connection, an h2 error)
/// rather than sent by a server: tonic keeps the local error as the source, while a status read
/// from a server's trailers has none.
fn is_local_transport_error(status: &tonic::Status) -> bool {
    status.source().is_some()
}

/// Classifies a failed attempt of operation `op` sent to `addr`. The single mapping from gRPC
/// statuses to [`ClientError`]; see the module documentation for the rules.
pub(crate) fn classify(status: &tonic::Status, op: Op, addr: &str) -> Classified {
    let code = status.code();
    let msg = format!("{addr}: {}", status.message());
    let outcome = status
        .metadata()
        .get(OUTCOME_HEADER)
        .and_then(|v| v.to_str().ok());

    if failed_while_connecting(status) {
        return Classified {
            disposition: Disposition::NotSent,
            error: ClientError::NoServers(msg),
        };
    }
    match outcome {
        Some("unknown") => {
            return maybe_applied(op, msg);
        }
        Some("failed") => {
            // The server vouches nothing was applied, whatever the code.
            let error = definite_error(code, msg);
            let disposition = match code {
                tonic::Code::InvalidArgument
                | tonic::Code::OutOfRange
                | tonic::Code::Unauthenticated
                | tonic::Code::PermissionDenied => Disposition::Final,
                _ => Disposition::RetryDefinite { refresh_ring: true },
            };
            return Classified { disposition, error };
        }
        _ => {}
    }
    if is_local_transport_error(status) && code != tonic::Code::InvalidArgument {
        // A connection lost or reset after the request was handed to it.
        return maybe_applied(op, msg);
    }
    use tonic::Code as C;
    let disposition = match code {
        C::InvalidArgument | C::OutOfRange | C::Unauthenticated | C::PermissionDenied => {
            Disposition::Final
        }
        // Not enough live replicas: the server's contract says nothing was written.
        C::Unavailable => Disposition::RetryDefinite { refresh_ring: true },
        // A node that is leaving, joining or does not own the key refuses before doing anything.
        C::FailedPrecondition => Disposition::RetryDefinite { refresh_ring: true },
        // Load shedding refuses before doing anything.
        C::ResourceExhausted => Disposition::RetryDefinite {
            refresh_ring: false,
        },
        // Wrong service or method: nothing ran, and nothing else will either.
        C::Unimplemented | C::NotFound | C::AlreadyExists => Disposition::Final,
        // Deadline exceeded, cancelled, internal, unknown, aborted, data loss: the server may
        // have started applying the write.
        _ => return maybe_applied(op, msg),
    };
    Classified {
        disposition,
        error: definite_error(code, msg),
    }
}

/// The attempt reached a server and may have been applied.
fn maybe_applied(op: Op, msg: String) -> Classified {
    let error = match op {
        Op::Write => ClientError::UnknownOutcome(msg),
        // A read changes nothing: if this is the last attempt, the data was just unreachable.
        Op::Read => ClientError::Unavailable(msg),
    };
    Classified {
        disposition: Disposition::MaybeApplied,
        error,
    }
}

/// The [`ClientError`] for a failure known not to have been applied.
fn definite_error(code: tonic::Code, message: String) -> ClientError {
    use tonic::Code as C;
    match code {
        C::InvalidArgument | C::OutOfRange => ClientError::InvalidArgument(message),
        C::Unavailable => ClientError::Unavailable(message),
        C::Unauthenticated | C::PermissionDenied => ClientError::Unauthenticated(message),
        code => ClientError::Server { code, message },
    }
}

/// The error for an attempt that got no answer within its time budget: for a write it may have
/// been applied; a read just counts as unreachable.
pub(crate) fn attempt_timed_out(op: Op, addr: &str, budget: std::time::Duration) -> Classified {
    maybe_applied(
        op,
        format!("{addr}: no answer within {} ms", budget.as_millis()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status, metadata::MetadataMap};

    fn with_outcome(code: Code, outcome: &str) -> Status {
        let mut md = MetadataMap::new();
        md.insert(OUTCOME_HEADER, outcome.parse().expect("ascii"));
        Status::with_metadata(code, "quorum not reached", md)
    }

    fn connect_refused() -> Status {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        Status::from_error(Box::new(tonic::ConnectError(Box::new(io))))
    }

    fn reset_after_send() -> Status {
        // What tonic builds for a connection dropped mid-request: an UNAVAILABLE status whose
        // source is the local transport error.
        Status::from_error(Box::new(Transport(Status::unavailable("connection reset"))))
    }

    /// A local transport error wrapping a status, as hyper/tonic chain them.
    #[derive(Debug)]
    struct Transport(Status);
    impl std::fmt::Display for Transport {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "transport error")
        }
    }
    impl std::error::Error for Transport {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn table_of_statuses() {
        use Disposition as D;
        let retry = D::RetryDefinite { refresh_ring: true };
        let cases: Vec<(&str, Status, Op, D, ErrorKind)> = vec![
            (
                "connect refused, write",
                connect_refused(),
                Op::Write,
                D::NotSent,
                ErrorKind::Unavailable,
            ),
            (
                "connect refused, read",
                connect_refused(),
                Op::Read,
                D::NotSent,
                ErrorKind::Unavailable,
            ),
            (
                "server says unknown",
                with_outcome(Code::Unavailable, "unknown"),
                Op::Write,
                D::MaybeApplied,
                ErrorKind::UnknownOutcome,
            ),
            (
                "server says failed",
                with_outcome(Code::DeadlineExceeded, "failed"),
                Op::Write,
                retry,
                ErrorKind::Other,
            ),
            (
                "not enough replicas",
                Status::unavailable("1 of 2 replicas answered"),
                Op::Write,
                retry,
                ErrorKind::Unavailable,
            ),
            (
                "bad input",
                Status::invalid_argument("key: empty"),
                Op::Write,
                D::Final,
                ErrorKind::Other,
            ),
            (
                "bad secret",
                Status::unauthenticated("missing x-cluster-secret"),
                Op::Read,
                D::Final,
                ErrorKind::Other,
            ),
            (
                "server deadline on a write",
                Status::deadline_exceeded("too slow"),
                Op::Write,
                D::MaybeApplied,
                ErrorKind::UnknownOutcome,
            ),
            (
                "server deadline on a read",
                Status::deadline_exceeded("too slow"),
                Op::Read,
                D::MaybeApplied,
                ErrorKind::Unavailable,
            ),
            (
                "internal error on a write",
                Status::internal("disk"),
                Op::Write,
                D::MaybeApplied,
                ErrorKind::UnknownOutcome,
            ),
            (
                "node leaving",
                Status::failed_precondition("node 3 is leaving"),
                Op::Write,
                retry,
                ErrorKind::Other,
            ),
            (
                "connection reset after send, write",
                reset_after_send(),
                Op::Write,
                D::MaybeApplied,
                ErrorKind::UnknownOutcome,
            ),
            (
                "connection reset after send, read",
                reset_after_send(),
                Op::Read,
                D::MaybeApplied,
                ErrorKind::Unavailable,
            ),
            (
                "wrong service",
                Status::unimplemented("no such method"),
                Op::Write,
                D::Final,
                ErrorKind::Other,
            ),
        ];
        for (name, status, op, want_disp, want_kind) in cases {
            let got = classify(&status, op, "127.0.0.1:1");
            assert_eq!(got.disposition, want_disp, "{name}: {status:?}");
            assert_eq!(got.error.kind(), want_kind, "{name}: {:?}", got.error);
            assert!(
                got.error.to_string().contains("127.0.0.1:1"),
                "{name}: message names the node: {}",
                got.error
            );
        }
    }

    #[test]
    fn server_messages_are_kept() {
        let got = classify(
            &Status::invalid_argument("key: 70000 bytes, limit 65536"),
            Op::Write,
            "n1",
        );
        assert_eq!(
            got.error,
            ClientError::InvalidArgument("n1: key: 70000 bytes, limit 65536".into())
        );
    }

    #[test]
    fn timeouts_are_unknown_only_for_writes() {
        let w = attempt_timed_out(Op::Write, "n1", std::time::Duration::from_millis(250));
        assert!(w.error.is_unknown_outcome());
        assert!(w.error.to_string().contains("250 ms"), "{}", w.error);
        let r = attempt_timed_out(Op::Read, "n1", std::time::Duration::from_millis(250));
        assert!(!r.error.is_unknown_outcome());
        assert_eq!(r.disposition, Disposition::MaybeApplied);
    }
}
