//! loadgen: runs a scenario (workload, cluster, fault timeline) against kvstore and writes
//! latency figures, time series and plots under `results/`. Arriving with issue 4.

fn main() {
    eprintln!("loadgen: scenario runs arrive with issue 4 (workloads, faults, results, plots)");
    std::process::exit(2);
}
