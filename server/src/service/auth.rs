//! The cluster-secret check on NodeInternal: a tonic interceptor refusing calls without the
//! secret with UNAUTHENTICATED. With no secret configured every call passes.

use kvstore_proto::CLUSTER_SECRET_HEADER;
use tonic::{Request, Status};

/// Checks `x-cluster-secret` against the configured secret.
#[derive(Clone, Debug)]
pub struct RequireSecret(Option<String>);

impl RequireSecret {
    /// A check for `secret` (none: allow all).
    pub fn new(secret: Option<String>) -> Self {
        Self(secret)
    }
}

impl tonic::service::Interceptor for RequireSecret {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
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
