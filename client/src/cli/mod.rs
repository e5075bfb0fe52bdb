//! Pieces of the `kv` binary that are worth testing on their own: duration parsing, the exit
//! code of each failure, and the human-readable output. No network here.

pub mod duration;
pub mod exit;
pub mod output;
