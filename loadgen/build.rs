//! Compiles the vendored, reduced etcd v3 protos (`etcd-proto/`, Apache-2.0) for the etcd peer
//! driver with `protox` (pure Rust), the same way `proto/` builds kvstore's contract: a fresh
//! machine has no `protoc`, and `cargo build` must just work. Only the client is generated.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=etcd-proto/rpc.proto");
    println!("cargo:rerun-if-changed=etcd-proto/kv.proto");
    let fds = protox::compile(["rpc.proto", "kv.proto"], ["etcd-proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        // Values are shared `Bytes` between the generator, the request and the history.
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}
