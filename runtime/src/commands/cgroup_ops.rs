//! Subcommands that act on a running container through its cgroup: `pause`, `resume`,
//! `ps`, `update`.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use super::{print, CmdError};
use crate::cgroups::Cgroup;
use crate::cli::{ListFormat, UpdateArgs};
use crate::state::{Container, Status};

fn open(c: &Container) -> Result<Cgroup, CmdError> {
    Ok(Cgroup::open(&c.record.cgroup, &c.record.id)?)
}

fn require(c: &Container, want: &[Status], verb: &str) -> Result<(), CmdError> {
    let status = c.status();
    if want.contains(&status) {
        return Ok(());
    }
    Err(CmdError::WrongState {
        id: c.record.id.clone(),
        status: status.to_string(),
        verb: verb.into(),
    })
}

pub fn pause(root: &Path, id: &str) -> Result<(), CmdError> {
    let c = Container::load(root, id)?;
    require(&c, &[Status::Running, Status::Created], "pause")?;
    Ok(open(&c)?.freeze(true)?)
}

pub fn resume(root: &Path, id: &str) -> Result<(), CmdError> {
    let c = Container::load(root, id)?;
    require(&c, &[Status::Paused], "resume")?;
    Ok(open(&c)?.freeze(false)?)
}

/// runc's `ps`: the pids as JSON, or `ps` (with the given arguments, default `-ef`)
/// filtered to the container's processes.
pub fn ps(root: &Path, id: &str, format: ListFormat, ps_args: &[String]) -> Result<(), CmdError> {
    let c = Container::load(root, id)?;
    require(
        &c,
        &[Status::Running, Status::Created, Status::Paused],
        "ps",
    )?;
    let pids = open(&c)?.pids()?;
    if format == ListFormat::Json {
        return print(&(serde_json::to_string(&pids).expect("serialises") + "\n"));
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|source| CmdError::Ps { source })?;
    if !out.status.success() {
        return Err(CmdError::PsFailed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        });
    }
    print(&filter_ps(&String::from_utf8_lossy(&out.stdout), &pids)?)
}

/// Keeps the header and the lines whose PID column is one of `pids`.
fn filter_ps(text: &str, pids: &[i32]) -> Result<String, CmdError> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| CmdError::PsFailed {
            args: String::new(),
            stderr: "ps output has no PID column".into(),
        })?;
    let mut out = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

/// `update`: new limits from `-r file` (`-` for stdin) and the resource flags.
pub fn update(root: &Path, a: &UpdateArgs) -> Result<(), CmdError> {
    let c = Container::load(root, &a.id)?;
    require(
        &c,
        &[Status::Running, Status::Created, Status::Paused],
        "update",
    )?;
    let mut res: LinuxResources = match &a.resources {
        Some(path) => super::update_flags::read_resources(path)?,
        None => LinuxResources::default(),
    };
    super::update_flags::apply_flags(&mut res, a)?;
    open(&c)?.apply(&res, c.record.pid)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_is_filtered_by_pid_column() {
        let text = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 init\nroot 42 1 0 10:00 ? 00:00:00 sleep\n";
        let out = filter_ps(text, &[42]).unwrap();
        assert_eq!(
            out,
            "UID PID PPID C STIME TTY TIME CMD\nroot 42 1 0 10:00 ? 00:00:00 sleep\n"
        );
    }
}
