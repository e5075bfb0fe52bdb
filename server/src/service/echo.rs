//! The `Echo` service: answers with the request's payload, so benchmarks can measure one bare
//! gRPC hop against the same server process.

use kvstore_proto::pb;
use kvstore_proto::pb::echo_server::Echo;
use tonic::{Request, Response, Status};

/// Echoes payloads.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoService;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn echo(
        &self,
        request: Request<pb::EchoMessage>,
    ) -> Result<Response<pb::EchoMessage>, Status> {
        Ok(Response::new(request.into_inner()))
    }
}
