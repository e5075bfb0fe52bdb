//! Compiles `kvstore.proto` with `protox` (pure Rust), so no system `protoc` is needed: a fresh
//! machine has none, and `cargo build` must just work.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=kvstore.proto");
    let fds = protox::compile(["kvstore.proto"], ["."])?;
    tonic_prost_build::configure()
        // `bytes::Bytes` for every bytes field: a 1 MB value is shared, not copied, between
        // the decoder, the storage engine and the replicas' requests.
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}
