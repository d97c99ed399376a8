//! The tiny gRPC service of meshtrace's tests and benches: `meshtrace.test.v1.Echo`
//! (`proto/echo.proto`), generated at build time without `protoc`.

#![allow(missing_docs)]

/// `meshtrace.test.v1`: the messages, `echo_client::EchoClient` and
/// `echo_server::{Echo, EchoServer}`.
pub mod echo {
    tonic::include_proto!("meshtrace.test.v1");
}

/// The codec the generated code uses, for tests that call a method by a path of their own.
pub use tonic_prost::ProstCodec;
