//! The cluster under test: a [`launcher::LocalCluster`] of node processes, or the endpoints of
//! an existing cluster; and the [`faults`] timeline that kills, restarts, pauses and resumes
//! nodes mid-run. [`process`] owns the child processes (killed on drop, by PID only).

pub mod faults;
pub mod launcher;
pub mod process;
