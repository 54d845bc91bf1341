//! Generates the gRPC client of Envoy's rate limit service from `proto/rls.proto`.
//!
//! `protoc` comes from the `protoc-bin-vendored` crate (a binary inside a crates.io package),
//! so building needs nothing that cargo does not fetch; `PROTOC` overrides it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/rls.proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    let protoc = match std::env::var_os("PROTOC") {
        Some(path) => path.into(),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        .compile_with_config(config, &["proto/rls.proto"], &["proto"])?;
    Ok(())
}
