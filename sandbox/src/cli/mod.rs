//! The OCI runtime command line: the lifecycle operations runc users know.

pub mod create;
pub mod ops;
pub mod sentry_main;
pub mod state;
