//! Size limits shared by clients and servers.
//!
//! tonic decodes at most 4 MiB per message by default, which would refuse a legal 8 MiB value;
//! both sides raise their gRPC limits to [`GRPC_MESSAGE_LIMIT`].

/// Longest key accepted by default, in bytes.
pub const DEFAULT_MAX_KEY_BYTES: usize = 64 * 1024;

/// Largest value accepted by default, in bytes.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 8 * 1024 * 1024;

/// gRPC encode/decode limit: the largest value and key plus headroom for framing and batching.
pub const GRPC_MESSAGE_LIMIT: usize =
    DEFAULT_MAX_VALUE_BYTES + DEFAULT_MAX_KEY_BYTES + 8 * 1024 * 1024;
