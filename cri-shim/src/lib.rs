//! hull-cri: the CRI v1 (`runtime.v1`) server of the hull stack.
//!
//! Implemented so far: `Version` and the whole ImageService (pull into a content-addressed
//! store, list, status, remove, filesystem usage). Every other RuntimeService RPC answers
//! `UNIMPLEMENTED` (issue 4). See `docs/design/cri.md`.

pub mod api;
pub mod cni;
pub mod config;
pub mod crilog;
pub mod digest;
pub mod fsutil;
pub mod inflight;
pub mod manifest;
pub mod monitor;
pub mod oci;
pub mod pinns;
pub mod podns;
pub mod pull;
pub mod records;
pub mod reference;
pub mod registry;
pub mod server;
pub mod snapshot;
pub mod spec;
pub mod stats;
pub mod store;
pub mod sys;
pub mod unpack;
