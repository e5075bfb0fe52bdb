//! Admission at the door: a client request is admitted or shed when its headers arrive,
//! before its body is read.
//!
//! Admission inside the handlers came too late for large values: tonic decodes a request's
//! whole body before the handler runs, so under overload the node held (and the clients
//! spent bandwidth sending) every 1 MiB put it was about to shed, and the ones it admitted
//! waited behind them: admitted requests came back as unknown outcomes. Here the request is
//! charged an estimate (the moving average of the puts, or of the values reads returned) when
//! its headers arrive; a shed request is answered RESOURCE_EXHAUSTED at once, its body never
//! read (HTTP/2 resets the stream, so the client stops sending it). The handler then charges
//! whatever the real request has beyond the estimate
//! ([`crate::admission::Admission::admit_extra`]), so the byte limit holds exactly.
//!
//! Translation only: the decisions are [`crate::admission::Admission`]'s; the status comes
//! from [`status`].

use std::convert::Infallible;
use std::sync::Arc;
use tokio::time::Instant;

use futures::future::{BoxFuture, FutureExt};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::codegen::{Context, Poll, Service};
use tonic::server::NamedService;

use crate::admission::{Charged, Estimate};
use crate::error::Error;
use crate::instruments::{LEVEL_UNREAD, OUTCOME_SHED};
use crate::node::shared::Shared;
use crate::service::status::{self, Op};

/// A client-facing service behind the node's admission budget.
#[derive(Debug, Clone)]
pub struct Admitted<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Admitted<S> {
    /// `inner` behind the admission budget of `shared`.
    pub fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }
}

impl<S: NamedService> NamedService for Admitted<S> {
    const NAME: &'static str = S::NAME;
}

/// What a request to `path` is charged before its body is read, whether it writes, and its
/// index in the request metrics' operations (`None`: not one of them).
fn classify(path: &str) -> (Estimate, Op, Option<usize>) {
    match path.rsplit('/').next().unwrap_or("") {
        "Get" => (Estimate::Read, Op::Read, Some(0)),
        "Put" => (Estimate::Put, Op::Write, Some(1)),
        "Delete" => (Estimate::Small, Op::Write, Some(2)),
        _ => (Estimate::Small, Op::Read, None),
    }
}

impl<S, B> Service<http::Request<B>> for Admitted<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let (estimate, op, metric) = classify(req.uri().path());
        let admission = &self.shared.admission;
        let charge = admission.estimate(estimate);
        let now = Instant::now();
        match admission.admit(charge, now) {
            Ok(permit) => {
                req.extensions_mut().insert(Charged(charge));
                let answer = self.inner.call(req);
                async move {
                    let response = answer.await;
                    // The permit covers the handler's work; the answer's bytes are tonic's.
                    drop(permit);
                    response
                }
                .boxed()
            }
            Err(shed) => {
                if let Some(op) = metric {
                    let took = now.elapsed();
                    self.shared
                        .requests
                        .record(op, LEVEL_UNREAD, OUTCOME_SHED, took);
                }
                let status = status::to_status(&Error::Overloaded(shed), op);
                futures::future::ready(Ok(status.into_http())).boxed()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_charged_by_method() {
        assert_eq!(
            classify("/kvstore.v1.KVStore/Put"),
            (Estimate::Put, Op::Write, Some(1))
        );
        assert_eq!(
            classify("/kvstore.v1.KVStore/Get"),
            (Estimate::Read, Op::Read, Some(0))
        );
        assert_eq!(
            classify("/kvstore.v1.KVStore/Delete"),
            (Estimate::Small, Op::Write, Some(2))
        );
        assert_eq!(classify("/x/Other"), (Estimate::Small, Op::Read, None));
        assert_eq!(crate::instruments::OPS, ["get", "put", "delete"]);
        assert_eq!(crate::instruments::LEVELS[LEVEL_UNREAD], "unread");
        assert_eq!(
            crate::instruments::OUTCOMES[OUTCOME_SHED],
            "resource_exhausted"
        );
    }
}
