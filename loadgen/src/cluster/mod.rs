//! The cluster under test: a [`launcher::LocalCluster`] of node processes, or the endpoints of
//! an existing cluster; and the [`faults`] timeline that kills, restarts, pauses and resumes
//! nodes mid-run, and moves their wall clocks ([`clock`], through libfaketime). The processes themselves are [`kvstore_server::process::ChildProcess`]es
//! (killed on drop, signalled by PID only), shared with the integration tests.

pub mod clock;
pub mod faults;
pub mod launcher;
