//! `kvstore-server`: one node of a kvstore cluster (see `kvstore_server::cli`).

fn main() -> std::process::ExitCode {
    kvstore_server::cli::main(std::env::args_os())
}
