//! Compiles the CSI v1 spec (`proto/csi/v1/csi.proto`, verbatim from
//! container-storage-interface/spec v1.13.0, Apache-2.0) and the kubelet's
//! plugin-registration API with tonic-prost-build (protoc from `PROTOC`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/csi/v1/csi.proto", "proto/pluginregistration/v1/api.proto"];
    tonic_prost_build::configure().compile_protos(&protos, &["proto"])?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
