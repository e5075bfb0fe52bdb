//! Anti-entropy: every replica of every arc converges, whatever it missed (Dynamo's Merkle
//! trees, Riak's Tictac AAE, Cassandra's repair).
//!
//! Each node keeps a hash tree per arc it replicates ([`tree`], [`trees`]), updated exactly on
//! every stored change through the engine's change observer and rebuilt from the engine now
//! and then. Replicas compare trees in a three-level exchange (roots, branches, leaves), list
//! the keys of differing leaves and copy the newer side's entries through last-write-wins
//! ([`diff`], [`exchange`]). A repair cycle ([`cycle`]) exchanges with every other replica of
//! every arc, twice over (so what one peer gave reaches the others), and records the arcs in
//! the repair ledger, which is what lets compaction collect their old tombstones. [`task`] runs
//! the rebuilds and the periodic cycles; `kv repair` asks for a cycle now. [`state`] is what
//! the rest of the node holds of it.

pub mod cycle;
pub mod diff;
pub mod exchange;
pub mod state;
pub mod task;
pub mod tree;
pub mod trees;
