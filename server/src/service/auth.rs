//! The cluster-secret check on NodeInternal: a tonic interceptor refusing calls without the
//! secret with UNAUTHENTICATED. With no secret configured every call passes. With peer TLS it
//! also records whether the caller's certificate is a node's, for the node-only handlers.

use std::sync::Arc;

use kvstore_proto::CLUSTER_SECRET_HEADER;
use tonic::{Request, Status};

use crate::tls::{PeerVerdict, judge_peer};

/// Checks `x-cluster-secret` against the configured secret and, with peer TLS, judges the
/// caller's certificate into a [`PeerVerdict`] that node-only handlers check
/// ([`require_peer`]).
#[derive(Clone)]
pub struct RequireSecret(
    Option<String>,
    Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
);

impl std::fmt::Debug for RequireSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequireSecret")
            .field("peer_tls", &self.1.is_some())
            .finish_non_exhaustive()
    }
}

impl RequireSecret {
    /// A check for `secret` (none: allow all).
    pub fn new(secret: Option<String>) -> Self {
        Self(secret, None)
    }

    /// Also judges callers' certificates with `verifier` (the peer CA's).
    pub fn with_peer_verifier(
        mut self,
        verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    ) -> Self {
        self.1 = verifier;
        self
    }
}

/// Refuses a node-only call whose caller did not prove to be a node (peer TLS on).
pub fn require_peer<T>(req: &Request<T>) -> Result<(), Status> {
    match req.extensions().get::<PeerVerdict>() {
        Some(PeerVerdict(Err(why))) => Err(Status::unauthenticated(why.clone())),
        _ => Ok(()),
    }
}

impl tonic::service::Interceptor for RequireSecret {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.1 {
            let certs = req.peer_certs();
            let verdict = judge_peer(v.as_ref(), certs.as_deref().map(|c| c.as_slice()));
            req.extensions_mut().insert(verdict);
        }
        let Some(want) = &self.0 else {
            return Ok(req);
        };
        match req.metadata().get(CLUSTER_SECRET_HEADER) {
            Some(got) if constant_time_eq(got.as_bytes(), want.as_bytes()) => Ok(req),
            Some(_) => Err(Status::unauthenticated(format!(
                "wrong cluster secret in {CLUSTER_SECRET_HEADER}"
            ))),
            None => Err(Status::unauthenticated(format!(
                "this cluster requires its secret in the {CLUSTER_SECRET_HEADER} metadata"
            ))),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    #[test]
    fn refuses_missing_or_wrong_secret() {
        let mut check = RequireSecret::new(Some("s3cret".into()));
        assert_eq!(
            check.call(Request::new(())).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let mut wrong = Request::new(());
        wrong
            .metadata_mut()
            .insert(CLUSTER_SECRET_HEADER, "nope".parse().unwrap());
        assert!(check.call(wrong).is_err());
        let mut right = Request::new(());
        right
            .metadata_mut()
            .insert(CLUSTER_SECRET_HEADER, "s3cret".parse().unwrap());
        assert!(check.call(right).is_ok());
        assert!(RequireSecret::new(None).call(Request::new(())).is_ok());
    }
}
