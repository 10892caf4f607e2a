//! Generates the Rust types from `proto/` with protox (a pure-Rust protobuf compiler), so no
//! system `protoc` is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/p2pd/control.proto", "proto/p2pd/wire.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new()
        // Block data arrives in 1 MiB frames: decoded as a slice of the frame, not a copy.
        .bytes([".p2pd.control.BlockData.data"])
        .compile_fds(descriptors)?;
    Ok(())
}
