//! `checkpoint` and `restore`, which runc does through CRIU.
//!
//! hull does not drive CRIU yet. Both commands therefore check what they can and fail
//! with the reason: CRIU missing, `criu check` failing on this kernel (Debian's CRIU
//! 3.17 cannot read this kernel's vDSO), or, where CRIU works, that hull's support is
//! not written yet. They never pretend to have saved or restored anything.

use std::path::Path;
use std::process::Command;

use super::CmdError;
use crate::state::{Container, Status};

/// What stands between this host and a CRIU checkpoint.
fn criu_problem() -> String {
    match Command::new("criu").arg("check").output() {
        Err(e) => format!("CRIU is not installed ({e})"),
        Ok(out) if !out.status.success() => {
            let text = String::from_utf8_lossy(&out.stderr);
            let last = text
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("no output");
            format!("`criu check` fails on this kernel: {}", last.trim())
        }
        Ok(_) => "hull does not drive CRIU yet".into(),
    }
}

pub fn checkpoint(root: &Path, id: &str) -> Result<(), CmdError> {
    let c = Container::load(root, id)?;
    if !matches!(c.status(), Status::Running | Status::Paused) {
        let status = c.status().to_string();
        return Err(CmdError::WrongState {
            id: id.into(),
            status,
            verb: "checkpoint".into(),
        });
    }
    Err(CmdError::Criu {
        verb: "checkpoint",
        reason: criu_problem(),
    })
}

pub fn restore(id: &str) -> Result<(), CmdError> {
    crate::state::check_id(id)?;
    Err(CmdError::Criu {
        verb: "restore",
        reason: criu_problem(),
    })
}
