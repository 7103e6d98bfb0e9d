//! `hull-cri-monitor`: hull-cri's per-container monitor (see `hull_cri::monitor`).

fn main() -> std::process::ExitCode {
    hull_cri::monitor::main()
}
