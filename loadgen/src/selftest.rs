//! loadgen's own ceiling: generating operations and recording their latencies with no network,
//! on one thread, so it can be compared with what the cluster takes. `loadgen selftest` prints
//! ops/s per core; the criterion bench `generator` measures the same loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::generator::{KeySpace, OpGenerator, ValuePool};
use crate::measure::{Aggregate, Recorder};
use crate::scenario::WorkloadSpec;

/// One thread's figure.
#[derive(Debug, Clone, Copy)]
pub struct SelfTest {
    /// Operations generated and recorded.
    pub ops: u64,
    /// Wall-clock seconds taken.
    pub seconds: f64,
    /// CPU seconds this thread used (less than `seconds` when the machine is shared).
    pub cpu_seconds: f64,
}

impl SelfTest {
    /// Operations per wall-clock second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.seconds.max(1e-9)
    }

    /// Operations per CPU second of this thread: ops/s per core, independent of how busy the
    /// machine's other cores and processes are.
    pub fn ops_per_cpu_sec(&self) -> f64 {
        self.ops as f64 / self.cpu_seconds.max(1e-9)
    }
}

/// CPU time used by the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Generates and records operations of workload `w` for about `duration` on this thread: each
/// operation is drawn (kind, key, value), given synthetic instants, and recorded exactly as the
/// driver records a real one.
pub fn run(w: &WorkloadSpec, duration: Duration) -> SelfTest {
    let space = Arc::new(KeySpace::new(w.record_count, &w.key_prefix));
    let pool = ValuePool::new(w.value_size.max() as usize, 1);
    let mut g = OpGenerator::new(w, 1, 0, pool, space);
    let start = Instant::now();
    let cpu_start = thread_cpu_time();
    let agg = Arc::new(Aggregate::new(start));
    let mut rec = Recorder::new(agg);
    let mut ops = 0u64;
    let mut now = start;
    let mut op = crate::generator::Op::default();
    loop {
        // Check the clock once per batch: it is the only syscall in the loop.
        for i in 0..4096u64 {
            g.next_op_into(&mut op);
            std::hint::black_box(&op);
            let done = now + Duration::from_micros(200 + (i & 1023));
            rec.record(op.kind, now, now, done, Ok(()));
        }
        ops += 4096;
        now = Instant::now();
        if now.duration_since(start) >= duration {
            break;
        }
    }
    rec.finish();
    SelfTest {
        ops,
        seconds: start.elapsed().as_secs_f64(),
        cpu_seconds: thread_cpu_time().saturating_sub(cpu_start).as_secs_f64(),
    }
}
