//! Generates the whistle.v1 gRPC code from `proto/` without a system `protoc`: protox
//! parses the files into a descriptor set, tonic-prost-build generates from it, and the
//! same descriptor set is embedded for gRPC server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "types",
        "intake",
        "handling",
        "cases",
        "departments",
        "admin",
        "dashboards",
    ]
    .map(|f| root.join(format!("whistle/v1/{f}.proto")));
    println!("cargo:rerun-if-changed={}", root.display());
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("whistle_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
