//! How a failed operation is classified, the same way for every store: each driver says what
//! it knows about a failure (a [`Failure`]), and [`classify`] turns that into the
//! [`ErrorKind`] the summary counts and the history records (`fail` or `unknown`).
//!
//! The rule is the kvstore client's: `fail` is only claimed when the request surely had no
//! effect (it never left loadgen, or the store refused it before applying anything); anything
//! that may have been applied, a timeout or a connection lost after sending, is `unknown`.
//! Reads follow the same rule; a read's outcome only decides whether the checker judges it.

use kvstore_client::ErrorKind;

/// What a driver knows about a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Never sent: no connection could be made (refused, or none open).
    NotSent,
    /// The store answered that it cannot serve now and applied nothing (kvstore UNAVAILABLE,
    /// Redis `LOADING` or `MASTERDOWN`).
    Unavailable,
    /// The store answered with a definite refusal (bad request, out of memory, read-only).
    Refused,
    /// Sent, and no definite answer came: a timeout, a connection lost after sending, a leader
    /// lost mid-proposal, or a write applied on the primary that too few replicas confirmed.
    Indeterminate,
}

/// The class counted and recorded for `f`.
pub fn classify(f: Failure) -> ErrorKind {
    match f {
        Failure::NotSent | Failure::Unavailable => ErrorKind::Unavailable,
        Failure::Refused => ErrorKind::Other,
        Failure::Indeterminate => ErrorKind::UnknownOutcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_with_no_effect_are_definite() {
        let table = [
            (Failure::NotSent, ErrorKind::Unavailable),
            (Failure::Unavailable, ErrorKind::Unavailable),
            (Failure::Refused, ErrorKind::Other),
            (Failure::Indeterminate, ErrorKind::UnknownOutcome),
        ];
        for (f, want) in table {
            assert_eq!(classify(f), want, "{f:?}");
        }
    }
}
