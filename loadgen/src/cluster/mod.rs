//! The cluster under test: launching local nodes, addressing existing ones, injecting faults.
pub mod process;
