//! The whistle.v1 protobuf contract, generated from `proto/whistle/v1/*.proto` at build
//! time (see `build.rs`; no system protoc needed). Servers, the CLI and department
//! integrations written in Rust all depend on this crate rather than on each other.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("whistle.v1");
}

/// The encoded `FileDescriptorSet` of the contract, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/whistle_descriptor.bin"));
