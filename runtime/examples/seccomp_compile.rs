//! Benchmark (not a test): how long `hull::seccomp::compile` takes for the
//! Debian containers-common profile, the work `hull create` adds per container.
//!
//! cargo run --release -p hull --example seccomp_compile [PROFILE] [ITERATIONS]

use std::hint::black_box;
use std::time::Instant;

use anyhow::Context;
use hull::seccomp::{compile, profile};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| profile::CONTAINERS_COMMON_PROFILE.into());
    let iterations: u32 = match args.next() {
        Some(n) => n.parse().context("ITERATIONS is a number")?,
        None => 2000,
    };
    let text = std::fs::read(&path).with_context(|| format!("reading {path}"))?;
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let spec = profile::from_docker_profile(&text, &caps)?;
    let filter = compile(&spec)?;
    let rules = spec.syscalls().as_ref().map_or(0, Vec::len);
    println!(
        "{path}: {rules} rules -> {} BPF instructions",
        filter.instructions().len()
    );

    for _ in 0..iterations / 10 {
        black_box(compile(black_box(&spec))?);
    }
    let start = Instant::now();
    for _ in 0..iterations {
        black_box(compile(black_box(&spec))?);
    }
    let per = start.elapsed().as_secs_f64() * 1e6 / f64::from(iterations);
    println!("compile: {per:.1} µs/compile over {iterations} iterations");
    Ok(())
}
