//! Traces text-order-probe and checks the recorded calls and their order.

use std::process::Command;

#[test]
fn records_first_calls_in_order_across_exec() {
    let probe = env!("CARGO_BIN_EXE_text-order-probe");
    let dir = std::env::temp_dir().join(format!("text-order-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let syms = dir.join("syms");
    let nm = Command::new("nm")
        .args(["--defined-only", "--print-size", probe])
        .output()
        .expect("nm (binutils) is needed");
    assert!(nm.status.success(), "nm failed");
    std::fs::write(&syms, nm.stdout).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_text-order"))
        .args(["--binary", probe, "--symbols"])
        .arg(&syms)
        .args(["--", probe])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "text-order failed: {stderr}");
    let names: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    let pos = |n: &str| names.iter().position(|x| *x == n);
    let (first, second, child) = (
        pos("probe_first").expect("probe_first recorded"),
        pos("probe_second").expect("probe_second recorded"),
        pos("probe_in_child").expect("the re-executed child's call recorded"),
    );
    assert!(first < second && second < child, "order: {names:?}");
    assert_eq!(
        pos("probe_never"),
        None,
        "a function never called was recorded"
    );
}

#[test]
fn bad_input_is_named() {
    let probe = env!("CARGO_BIN_EXE_text-order-probe");
    let run = |syms: &str, cmd: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_text-order"))
            .args(["--binary", probe, "--symbols", syms, "--", cmd])
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run("/nonexistent/syms", "/bin/true");
    assert!(err.contains("/nonexistent/syms"), "{err}");
    let syms = std::env::temp_dir().join(format!("text-order-syms-{}", std::process::id()));
    std::fs::write(&syms, "0000000000001000 0000000000000010 T f\n").unwrap();
    let err = run(syms.to_str().unwrap(), "/bin/false");
    std::fs::remove_file(&syms).unwrap();
    assert!(err.contains("/bin/false exited with 1"), "{err}");
}
