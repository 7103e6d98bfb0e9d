//! The gRPC services: ImageService (implemented) and RuntimeService (Version only so far).

mod image;
mod runtime;

pub use image::ImageServer;
pub use runtime::{Paths, RuntimeBackend, RuntimeServer};

/// The runtime name Version reports.
pub const RUNTIME_NAME: &str = "hull";
/// The CRI API version served.
pub const RUNTIME_API_VERSION: &str = "v1";
