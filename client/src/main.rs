//! The `kv` command-line client. Arriving with issue 3.

fn main() {
    eprintln!("kv: the command-line client arrives with issue 3");
    std::process::exit(2);
}
