//! Generates the CRI `runtime.v1` bindings from the published proto of k8s.io/cri-api.
//!
//! The proto belongs to the Kubernetes project and is not copied into this repository: it is
//! read from the Go module cache (`go mod download`), or from the file `HULL_CRI_PROTO` names.

use std::path::PathBuf;
use std::process::Command;

/// The pinned cri-api module version the bindings follow.
const CRI_API: &str = "k8s.io/cri-api@v0.36.6";
const PROTO_IN_MODULE: &str = "pkg/apis/runtime/v1/api.proto";

fn main() {
    println!("cargo:rerun-if-env-changed=HULL_CRI_PROTO");
    println!("cargo:rerun-if-changed=build.rs");
    let proto = match std::env::var_os("HULL_CRI_PROTO") {
        Some(p) => PathBuf::from(p),
        None => module_dir().join(PROTO_IN_MODULE),
    };
    if !proto.is_file() {
        panic!("hull-cri build: CRI proto not found at {}", proto.display());
    }
    println!("cargo:rerun-if-changed={}", proto.display());
    // Debian 12's protoc (3.21) predates the `debug_redact` field option (3.22) that the
    // AuthConfig secrets carry. It only affects text formatting of messages, which prost
    // does not generate, so it is removed from a copy in OUT_DIR.
    let text = std::fs::read_to_string(&proto)
        .unwrap_or_else(|e| panic!("hull-cri build: reading {}: {e}", proto.display()));
    let text = text.replace(" [debug_redact = true]", "");
    if text.contains("debug_redact") {
        panic!(
            "hull-cri build: unexpected debug_redact form in {}",
            proto.display()
        );
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let include = out_dir.join("proto");
    std::fs::create_dir_all(&include).expect("create OUT_DIR/proto");
    let copy = include.join("api.proto");
    std::fs::write(&copy, text).expect("write OUT_DIR/proto/api.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&[copy], &[include])
        .unwrap_or_else(|e| {
            panic!("hull-cri build: protoc failed (is protobuf-compiler installed?): {e}")
        });
}

/// Downloads (or finds in the cache) the cri-api module and returns its directory.
fn module_dir() -> PathBuf {
    let go = ["go", "/usr/local/go/bin/go", "/usr/lib/go/bin/go"]
        .into_iter()
        .find(|g| {
            Command::new(g)
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .unwrap_or_else(|| {
            panic!("hull-cri build: no `go` found; set HULL_CRI_PROTO to api.proto")
        });
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let out = Command::new(go)
        .args(["mod", "download", "-json", CRI_API])
        .current_dir(out_dir) // outside any go.mod
        .env("GOFLAGS", "-mod=mod")
        .output()
        .unwrap_or_else(|e| panic!("hull-cri build: running go: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        panic!(
            "hull-cri build: go mod download {CRI_API} failed: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // `go mod download -json` prints `"Dir": "<path>",`; avoid a JSON dependency in build.rs.
    let dir = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("\"Dir\": \""))
        .and_then(|l| l.strip_suffix("\","))
        .unwrap_or_else(|| panic!("hull-cri build: no Dir in go mod download output: {text}"));
    PathBuf::from(dir)
}
