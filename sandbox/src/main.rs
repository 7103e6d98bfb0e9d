//! `hull-sandbox`: an OCI runtime whose containers run on a user-space kernel. It is not
//! implemented yet (issue 6), so every invocation fails with a clear message.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("hull-sandbox: not implemented yet: the sandbox runtime is tracked by issue 6");
    ExitCode::from(2)
}
