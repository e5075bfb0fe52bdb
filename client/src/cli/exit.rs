//! How a failure of the `kv` command becomes an exit code and a message (the codes are listed
//! in `kv --help`).

use kvstore_client::{ClientError, ErrorKind};

/// Why a `kv` command failed.
#[derive(Debug)]
pub enum Failure {
    /// `get` found no live value.
    NotFound(String),
    /// A bad combination of arguments the parser could not catch.
    Usage(String),
    /// The cluster (or the attempt to reach it) failed.
    Client(ClientError),
    /// `leave` got no answer in time. The leave belongs to the node and goes on without us.
    LeaveUnconfirmed {
        /// The node asked to leave.
        node_id: u32,
        /// What the last attempt saw.
        error: ClientError,
    },
    /// `removenode` got no answer in time. The removal belongs to the node running it.
    RemoveUnconfirmed {
        /// The node being removed.
        node_id: u32,
        /// What the last attempt saw.
        error: ClientError,
    },
    /// A local problem: reading a file, writing stdout.
    Local(anyhow::Error),
}

/// The exit code and the message for `failure`.
pub fn exit_code(failure: &Failure) -> (u8, String) {
    match failure {
        Failure::NotFound(msg) => (1, msg.clone()),
        Failure::Usage(msg) => (2, msg.clone()),
        Failure::Local(e) => (4, format!("{e:#}")),
        Failure::LeaveUnconfirmed { node_id, error } => (
            3,
            format!(
                "{error} (the leave goes on in node {node_id}: run `kv leave {node_id}` again to \
                 wait for it, or watch its state with `kv ring`)"
            ),
        ),
        Failure::RemoveUnconfirmed { node_id, error } => (
            3,
            format!(
                "{error} (the removal goes on in the node running it: run `kv removenode \
                 {node_id}` again to wait for it; repeating it is harmless)"
            ),
        ),
        Failure::Client(e) => {
            let code = match (e, e.kind()) {
                (ClientError::InvalidArgument(_), _) => 2,
                (_, ErrorKind::Unavailable | ErrorKind::UnknownOutcome) => 3,
                _ => 4,
            };
            let hint = if e.is_unknown_outcome() {
                " (the write may have been applied: read the key to find out)"
            } else {
                ""
            };
            (code, format!("{e}{hint}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let cases: Vec<(Failure, u8)> = vec![
            (Failure::NotFound("k".into()), 1),
            (Failure::Usage("put: give a VALUE".into()), 2),
            (
                Failure::Client(ClientError::InvalidArgument("key: empty".into())),
                2,
            ),
            (
                Failure::Client(ClientError::Unavailable("1 of 2".into())),
                3,
            ),
            (Failure::Client(ClientError::NoServers("refused".into())), 3),
            (
                Failure::Client(ClientError::UnknownOutcome("timeout".into())),
                3,
            ),
            (
                Failure::Client(ClientError::Unauthenticated("secret".into())),
                4,
            ),
            (Failure::Local(anyhow::anyhow!("disk full")), 4),
        ];
        for (failure, want) in cases {
            assert_eq!(exit_code(&failure).0, want, "{failure:?}");
        }
        let (_, msg) = exit_code(&Failure::Client(ClientError::UnknownOutcome("t".into())));
        assert!(msg.contains("may have been applied"), "{msg}");
        let (code, msg) = exit_code(&Failure::LeaveUnconfirmed {
            node_id: 3,
            error: ClientError::UnknownOutcome("t".into()),
        });
        assert_eq!(code, 3);
        assert!(msg.contains("run `kv leave 3` again"), "{msg}");
    }
}
