//! Generates the gRPC code from `proto/blueshift.proto` without needing a system `protoc`:
//! `PROTOC` from the environment wins, otherwise the vendored binary is used.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded; nothing else reads the environment yet.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    println!("cargo:rerun-if-changed=proto/blueshift.proto");
    tonic_prost_build::configure().compile_protos(&["proto/blueshift.proto"], &["proto"])?;
    Ok(())
}
