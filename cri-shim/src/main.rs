//! `hull-cri`: the CRI v1 gRPC server. It is not implemented yet (issue 4), so it
//! refuses to start rather than pretend to serve a socket.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("hull-cri: not implemented yet: the CRI server is tracked by issue 4");
    ExitCode::from(2)
}
