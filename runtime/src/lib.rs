//! hull: a runc-compatible OCI runtime.
//!
//! `hull create` runs as a short-lived, single-threaded parent. It clones the container's
//! init straight into its namespaces, finishes the parent-side setup (id maps, cgroup,
//! limits) and waits on a sync socket until the init is ready. See docs/design/runtime.md.

pub mod apparmor;
pub mod cgroups;
pub mod cli;
pub mod commands;
pub mod config;
pub mod container;
pub mod hooks;
pub mod init;
pub mod landlock;
pub mod logging;
pub mod passwd;
pub mod procinfo;
pub mod report;
pub mod seccomp;
pub mod signal;
pub mod state;
pub mod sync;
pub mod sys;
pub mod timefmt;
