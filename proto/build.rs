//! Compiles the `.proto` files under `proto/` with tonic-prost-build (needs `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/sluice/cni/v1/node_network.proto"];
    tonic_prost_build::configure().compile_protos(&protos, &["proto"])?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
