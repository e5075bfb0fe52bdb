//! `kvstore-server`: one node of a kvstore cluster. The cluster arrives with issue 3.

fn main() {
    eprintln!("kvstore-server: the cluster node arrives with issue 3");
    std::process::exit(2);
}
