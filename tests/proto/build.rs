//! Compiles `proto/echo.proto` with protox (pure Rust: no `protoc` on the machine) into a
//! `FileDescriptorSet`, and generates the prost messages and the tonic client and server
//! from it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/echo.proto");
    let descriptors = protox::compile(["proto/echo.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
