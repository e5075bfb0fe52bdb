//! The gRPC surface of a node: `KVStore` (public), `NodeInternal` (node-to-node and operators,
//! behind the cluster-secret check) and `Echo` (the one-hop ceiling for benchmarks).
//!
//! This is the only layer that knows about tonic statuses: handlers validate, call into
//! `replication` and `cluster`, and map errors in one place ([`status`]). Message limits are
//! raised to the node's configured maxima so a legal 8 MiB value is never refused by the codec.

pub mod admit;
pub mod auth;
pub mod echo;
pub mod internal;
pub mod kv;
pub mod status;

use std::sync::Arc;

use kvstore_proto::pb::echo_server::EchoServer;
use kvstore_proto::pb::kv_store_server::KvStoreServer;
use kvstore_proto::pb::node_internal_server::NodeInternalServer;
use tonic::service::interceptor::InterceptedService;

use crate::node::shared::Shared;

/// The three services of a node, ready to add to a tonic router.
pub struct Services {
    /// KVStore, behind the admission budget.
    pub kv: admit::Admitted<KvStoreServer<kv::KvService>>,
    /// NodeInternal, behind the secret check.
    pub internal:
        InterceptedService<NodeInternalServer<internal::InternalService>, auth::RequireSecret>,
    /// Echo.
    pub echo: EchoServer<echo::EchoService>,
}

/// Builds the services over `shared`.
pub fn services(shared: &Arc<Shared>) -> Services {
    let limit = shared.config.grpc_message_limit();
    Services {
        kv: admit::Admitted::new(
            KvStoreServer::new(kv::KvService::new(shared.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            shared.clone(),
        ),
        internal: InterceptedService::new(
            NodeInternalServer::new(internal::InternalService::new(shared.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            auth::RequireSecret::new(shared.config.cluster_secret.clone())
                .with_peer_verifier(shared.tls.as_ref().map(|t| t.peer_verifier.clone())),
        ),
        echo: EchoServer::new(echo::EchoService)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
    }
}
