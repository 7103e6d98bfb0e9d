//! Layer tars come from registries, which are untrusted: any bytes, plain or compressed,
//! must unpack inside the destination or be refused, never write beside it, never panic.
#![no_main]

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use hull_cri::digest::Digest;
use hull_cri::manifest::Compression;
use hull_cri::unpack::{unpack_layer, UnpackOptions};
use libfuzzer_sys::fuzz_target;

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let compression = match selector % 3 {
        0 => Compression::None,
        1 => Compression::Gzip,
        _ => Compression::Zstd,
    };
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let outer = std::env::temp_dir().join(format!("hull-fuzz-tar-{}-{n}", std::process::id()));
    let (dest, canary) = (outer.join("dest"), outer.join("canary"));
    fs::create_dir_all(&dest).unwrap();
    fs::create_dir_all(&canary).unwrap();
    fs::write(canary.join("c"), b"c").unwrap();
    // Unprivileged: no device nodes or chown even when the fuzzer runs as root.
    let opts = UnpackOptions {
        privileged: false,
        max_bytes: 16 << 20,
    };
    // Any diff_id: the check comes last, after every entry was applied.
    let _ = unpack_layer(bytes, compression, &dest, &Digest::of(b""), &opts);
    assert_eq!(
        listing(&outer),
        ["canary", "dest"],
        "an entry was written beside dest"
    );
    assert_eq!(
        listing(&canary),
        ["c"],
        "an entry was written into a sibling dir"
    );
    assert_eq!(fs::read(canary.join("c")).unwrap(), b"c");
    fs::remove_dir_all(&outer).unwrap();
});
