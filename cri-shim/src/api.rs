//! Generated bindings of CRI `runtime.v1` (k8s.io/cri-api, see build.rs).

#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("runtime.v1");
