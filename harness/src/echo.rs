//! The bare gRPC echo service: answers every request with itself. loadgen measures it before
//! and after each run, and the cluster bench beside each case, so that figures are reported as
//! a ratio to what this machine's gRPC stack does with no store behind it.

use std::net::SocketAddr;

use kvstore_proto::limits::GRPC_MESSAGE_LIMIT;
use kvstore_proto::pb::{
    EchoMessage,
    echo_server::{Echo, EchoServer},
};

/// The echo service: answers with the request.
#[derive(Debug, Default, Clone, Copy)]
pub struct EchoService;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn echo(
        &self,
        request: tonic::Request<EchoMessage>,
    ) -> Result<tonic::Response<EchoMessage>, tonic::Status> {
        Ok(tonic::Response::new(request.into_inner()))
    }
}

/// Serves the echo service on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener) -> Result<(), tonic::transport::Error> {
    // TCP_NODELAY on every accepted connection (`Server::tcp_nodelay` only applies to
    // listeners tonic binds itself): without it Nagle and delayed ACKs add ~40 ms to a lone
    // request.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(
            EchoServer::new(EchoService)
                .max_decoding_message_size(GRPC_MESSAGE_LIMIT)
                .max_encoding_message_size(GRPC_MESSAGE_LIMIT),
        )
        .serve_with_incoming(incoming)
        .await
}

/// Serves the echo service on a free 127.0.0.1 port, on a runtime and two threads of its own
/// (as a separate server process would), so the ceiling is not starved by the caller's tasks.
/// Returns the address; the server lives as long as the process.
pub fn start_in_thread() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("echo runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind echo");
            tx.send(listener.local_addr().expect("addr"))
                .expect("report addr");
            serve(listener).await.expect("echo server");
        });
    });
    rx.recv().expect("echo server address")
}
