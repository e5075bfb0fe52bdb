//! What the tests, the benchmarks and loadgen share to run kvstore for real, kept out of the
//! product crates (`publish = false`):
//! - [`process`]: a node (or loadgen's echo server) as a child process: started, announced,
//!   signalled by PID, restarted on the same address and data directory, killed on drop;
//! - [`echo`]: the bare gRPC echo service every figure is measured against (the machine's
//!   ceiling), served in its own process (`loadgen echo-server`) or on its own threads.
//!
//! It depends on the wire contract only, never on the server's code: a node is a binary.

pub mod echo;
pub mod process;
