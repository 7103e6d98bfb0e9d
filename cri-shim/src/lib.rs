//! hull-cri: the CRI v1 (`runtime.v1`) server of the hull stack.
//!
//! It pulls images into a content-addressed store, unpacks their layers once into snapshots,
//! and runs pods (pinned namespaces, CNI) and containers (one `hull-cri-monitor` each, the
//! OCI runtime driven through its CLI). See `docs/design/cri.md`.

pub mod api;
pub mod apparmor;
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
pub mod stream;
pub mod sys;
pub mod tls;
pub mod unpack;
