//! The client's error type: definite failures apart from unknown outcomes.

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
#[derive(Debug, Clone, thiserror::Error)]
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
