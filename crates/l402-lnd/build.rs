//! Generates the gRPC client (and, with the `server` feature, server) code from the LND proto subset.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = std::env::var_os("CARGO_FEATURE_SERVER").is_some();
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(server)
        .compile_protos(&["proto/lightning.proto", "proto/invoices.proto", "proto/router.proto"], &["proto"])?;
    Ok(())
}
