//! hull-sandbox: an OCI runtime whose containers run on the Sentry, a user-space kernel
//! that serves their system calls itself (see docs/design/sandbox.md).

pub mod boot;
pub mod cli;
pub mod confine;
pub mod gofer;
pub mod platform;
pub mod sentry;
pub mod sys;
