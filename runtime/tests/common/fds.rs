//! Running the runtime with an extra descriptor open, as a caller that leaks
//! (or deliberately passes) one would. A shell does the redirection, so the
//! tests need no unsafe `pre_exec`.

use std::path::Path;
use std::process::Command;

use super::{run_cmd, runtime, Ctx, Out};

/// Runs `<runtime> --root <root> <args>` with `path` opened read-only as
/// descriptor `fd` (3..=9) of the runtime process.
pub fn rt_with_fd(ctx: &Ctx, fd: u8, path: &Path, args: &[&str]) -> Out {
    assert!(
        (3..=9).contains(&fd),
        "the shell redirects single-digit fds"
    );
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!(r#"exec "$@" {fd}<"$HULL_EXTRA_FD""#))
        .arg("sh")
        .arg(&runtime().path)
        .arg("--root")
        .arg(&ctx.root)
        .args(args)
        .env("HULL_EXTRA_FD", path);
    run_cmd(cmd, &ctx.tmp)
}
