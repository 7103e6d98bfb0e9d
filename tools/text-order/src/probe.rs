//! A traced program for the tracer's own test: calls `probe_first` then `probe_second`,
//! runs itself again as a child that calls `probe_in_child`, and never calls `probe_never`.

#[inline(never)]
#[no_mangle]
pub extern "C" fn probe_first(x: u64) -> u64 {
    std::hint::black_box(x) + 1
}

#[inline(never)]
#[no_mangle]
pub extern "C" fn probe_second(x: u64) -> u64 {
    std::hint::black_box(x) * 3
}

#[inline(never)]
#[no_mangle]
pub extern "C" fn probe_in_child(x: u64) -> u64 {
    std::hint::black_box(x) ^ 7
}

#[inline(never)]
#[no_mangle]
pub extern "C" fn probe_never(x: u64) -> u64 {
    std::hint::black_box(x) - 1
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("child") {
        probe_in_child(2);
        return;
    }
    let v = probe_second(probe_first(1));
    // A child that executes this binary again, as hull's sealed re-exec does: the tracer
    // must arm the new image too.
    let ok = std::process::Command::new(std::env::current_exe().expect("current exe"))
        .arg("child")
        .status()
        .is_ok_and(|s| s.success());
    if std::hint::black_box(v) == 0 {
        probe_never(v);
    }
    std::process::exit(if ok { 0 } else { 1 });
}
