//! The cluster client. CONTRACT SKELETON: the signatures are the API loadgen and the CLI build
//! against; the bodies are being written in the `cluster` branch (issue 3).

use bytes::Bytes;
use kvstore_proto::{ConsistencyLevel, Version, pb};

use crate::{ClientConfig, ClientError};

/// Per-read options.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Overrides the cluster's default R.
    pub consistency: Option<ConsistencyLevel>,
}

/// Per-write options.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Overrides the cluster's default W.
    pub consistency: Option<ConsistencyLevel>,
    /// Time to live in milliseconds (> 0).
    pub ttl_ms: Option<u64>,
}

/// What a get returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetResult {
    /// The live value, if any.
    pub value: Option<Bytes>,
    /// Its version (or the tombstone's, for a deleted key); `None` when never written.
    pub version: Option<Version>,
    /// Absolute expiry in ms since the Unix epoch; 0 means never.
    pub expires_at_ms: u64,
    /// Address of the node that coordinated the request.
    pub coordinator: String,
}

/// What a put returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    /// The version the write was given.
    pub version: Version,
    /// Address of the coordinating node.
    pub coordinator: String,
}

/// What a delete returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteResult {
    /// The tombstone's version.
    pub version: Version,
    /// Address of the coordinating node.
    pub coordinator: String,
}

/// A connection to a kvstore cluster. Cheap to clone; clones share connections and the ring.
#[derive(Debug, Clone)]
pub struct Client {
    _config: ClientConfig,
}

impl Client {
    /// Connects to the cluster through `config.seeds`.
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        Ok(Self { _config: config })
    }

    /// Reads `key`.
    pub async fn get(&self, _key: &str, _opts: ReadOptions) -> Result<GetResult, ClientError> {
        Err(ClientError::NoServers("client not implemented yet".into()))
    }

    /// Writes `value` under `key`.
    pub async fn put(
        &self,
        _key: &str,
        _value: Bytes,
        _opts: WriteOptions,
    ) -> Result<PutResult, ClientError> {
        Err(ClientError::NoServers("client not implemented yet".into()))
    }

    /// Deletes `key` (writes a tombstone).
    pub async fn delete(
        &self,
        _key: &str,
        _opts: WriteOptions,
    ) -> Result<DeleteResult, ClientError> {
        Err(ClientError::NoServers("client not implemented yet".into()))
    }

    /// The ring as the cluster reports it.
    pub async fn ring(&self) -> Result<pb::RingStateResponse, ClientError> {
        Err(ClientError::NoServers("client not implemented yet".into()))
    }

    /// One node's status.
    pub async fn status(&self, _addr: &str) -> Result<pb::NodeStatusResponse, ClientError> {
        Err(ClientError::NoServers("client not implemented yet".into()))
    }

    /// One replica's stored entry for `key`, bypassing coordination and read repair.
    pub async fn local_read(
        &self,
        _addr: &str,
        _key: &str,
    ) -> Result<pb::LocalReadResponse, ClientError> {
        Err(ClientError::NoServers("client not implemented yet".into()))
    }

    /// Asks node `node_id` to leave the cluster.
    pub async fn leave(&self, _node_id: u32) -> Result<pb::LeaveResponse, ClientError> {
        Err(ClientError::NoServers("client not implemented yet".into()))
    }
}
