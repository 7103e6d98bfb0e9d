//! text-order: lists the functions of a binary that commands call, in first-call order,
//! as a symbol ordering file for the linker (scripts/build-release.sh). Placing the code
//! a run executes together shrinks the text a process faults in: the kernel maps file
//! pages around each fault, so scattered code makes nearly the whole text resident.
//!
//! Usage: text-order --binary FILE --symbols NM_OUTPUT -- CMD [ARGS...]
//! CMD may be a script that runs the binary many times; every descendant is followed.

mod procfs;
mod symbols;
mod trace;

use anyhow::{bail, Context};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut binary, mut symbols) = (None, None);
    let mut rest = args.as_slice();
    while let [flag, value, tail @ ..] = rest {
        match flag.as_str() {
            "--binary" => binary = Some(value.clone()),
            "--symbols" => symbols = Some(value.clone()),
            "--" => break,
            other => bail!("unknown option {other:?}"),
        }
        rest = tail;
    }
    let (Some(binary), Some(symbols), Some((_, cmd))) = (binary, symbols, rest.split_first())
    else {
        bail!("usage: text-order --binary FILE --symbols NM_OUTPUT -- CMD [ARGS...]");
    };
    if cmd.is_empty() {
        bail!("text-order: no command given after --");
    }
    let table = std::fs::read_to_string(&symbols).with_context(|| format!("reading {symbols}"))?;
    let table = symbols::Symbols::parse(&table).with_context(|| symbols.clone())?;
    let bytes = std::fs::read(&binary).with_context(|| format!("reading {binary}"))?;
    let mut tracer = trace::Tracer::new(&table, &bytes);
    tracer.run(cmd)?;
    for name in &tracer.order {
        println!("{name}");
    }
    eprintln!(
        "text-order: {} of {} functions called",
        tracer.order.len(),
        table.len()
    );
    Ok(())
}
