//! `checker verify history.csv`. Arriving with issue 5.

fn main() {
    eprintln!("checker: history verification arrives with issue 5");
    std::process::exit(2);
}
