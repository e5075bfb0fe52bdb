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
//! whatever the real request has beyond the estimate ([`Admission::admit_extra`]), so the byte
//! limit holds exactly.
//!
//! Translation only: the decisions are [`Admission`]'s; the status comes from [`status`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use futures::future::{BoxFuture, FutureExt};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::codegen::{Context, Poll, Service};
use tonic::server::NamedService;

use crate::admission::{Admission, Charged, Estimate};
use crate::error::Error;
use crate::service::status::{self, Op};

/// A client-facing service behind the node's admission budget.
#[derive(Debug, Clone)]
pub struct Admitted<S> {
    inner: S,
    admission: Arc<Admission>,
}

impl<S> Admitted<S> {
    /// `inner` behind `admission`.
    pub fn new(inner: S, admission: Arc<Admission>) -> Self {
        Self { inner, admission }
    }
}

impl<S: NamedService> NamedService for Admitted<S> {
    const NAME: &'static str = S::NAME;
}

/// What a request to `path` is charged before its body is read, and whether it writes.
fn classify(path: &str) -> (Estimate, Op) {
    match path.rsplit('/').next().unwrap_or("") {
        "Put" => (Estimate::Put, Op::Write),
        "Delete" => (Estimate::Small, Op::Write),
        "Get" => (Estimate::Read, Op::Read),
        _ => (Estimate::Small, Op::Read),
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
        let (estimate, op) = classify(req.uri().path());
        let charge = self.admission.estimate(estimate);
        match self.admission.admit(charge, Instant::now()) {
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
            (Estimate::Put, Op::Write)
        );
        assert_eq!(
            classify("/kvstore.v1.KVStore/Get"),
            (Estimate::Read, Op::Read)
        );
        assert_eq!(
            classify("/kvstore.v1.KVStore/Delete"),
            (Estimate::Small, Op::Write)
        );
        assert_eq!(classify("/x/Other"), (Estimate::Small, Op::Read));
    }
}
