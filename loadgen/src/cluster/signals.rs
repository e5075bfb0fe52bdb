//! The process faults every launcher shares: kill, pause and resume of one launched process,
//! with the state loadgen keeps for it. The kvstore launcher and the peer launcher (Redis,
//! etcd) each own their processes; what a signal does to one, and to its state, is the same.

use kvstore_harness::process::ChildProcess;

use crate::scenario::NodeState;

/// SIGKILL the process (reaped) and mark it killed.
pub fn kill(process: &mut Option<ChildProcess>, state: &mut NodeState) -> Result<(), String> {
    let mut p = process.take().ok_or("node is not running")?;
    p.kill();
    *state = NodeState::Killed;
    Ok(())
}

/// SIGSTOP the process and mark it paused.
pub fn pause(process: &Option<ChildProcess>, state: &mut NodeState) -> Result<(), String> {
    process
        .as_ref()
        .ok_or("node is not running")?
        .pause()
        .map_err(|e| e.to_string())?;
    *state = NodeState::Paused;
    Ok(())
}

/// SIGCONT the process and mark it up.
pub fn resume(process: &Option<ChildProcess>, state: &mut NodeState) -> Result<(), String> {
    process
        .as_ref()
        .ok_or("node is not running")?
        .resume()
        .map_err(|e| e.to_string())?;
    *state = NodeState::Up;
    Ok(())
}
