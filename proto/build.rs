//! Compiles `proto/gatehouse/v1/*.proto` with protox, so no system `protoc` is needed,
//! and keeps the descriptor set for gRPC server reflection.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/gatehouse/v1/gatehouse.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("gatehouse_descriptor.bin"), fds.encode_to_vec())?;
    // The RPC is named `Connect` (docs/design.md, gRPC), which would clash with the generated client's
    // `connect(endpoint)` constructor: clients build a `Channel` and call `::new(channel)`.
    tonic_prost_build::configure().build_transport(false).compile_fds(fds)?;
    Ok(())
}
