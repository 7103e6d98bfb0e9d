//! `exec`: the process to run comes from `-p process.json`, or from the container's own
//! process settings with the command line's overrides (as runc builds it).

use std::path::Path;

use oci_spec::runtime::{Capability, LinuxCapabilities, Process};

use super::CmdError;
use crate::cli::ExecArgs;
use crate::config::ConfigError;
use crate::container::{self, ExecOpts};
use crate::state::Container;

pub fn exec(root: &Path, a: ExecArgs) -> Result<i32, CmdError> {
    if a.cgroup.is_some() {
        return Err(CmdError::Unsupported {
            what: "exec --cgroup".into(),
        });
    }
    let c = Container::load(root, &a.id)?;
    let process = match &a.process {
        Some(path) => crate::config::load_process(path)?,
        None => from_flags(&c, &a)?,
    };
    if process.terminal().unwrap_or(false) && a.console_socket.is_none() {
        return Err(CmdError::Unsupported {
            what: "a terminal without --console-socket".into(),
        });
    }
    if !a.detach {
        container::block_signals()?;
    }
    let opts = ExecOpts {
        process,
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        preserve_fds: a.preserve_fds,
        ignore_paused: a.ignore_paused,
    };
    let started = container::exec(&c, &opts)?;
    if a.detach {
        return Ok(0);
    }
    Ok(container::wait_for_exit(started.pid, &started.pidfd, None)?)
}

/// The container's process with the command line's changes applied.
fn from_flags(c: &Container, a: &ExecArgs) -> Result<Process, CmdError> {
    if a.command.is_empty() {
        return Err(CmdError::Usage {
            what: "exec needs a command (or -p process.json)".into(),
        });
    }
    let spec = c.config()?;
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    let mut env = p.env().clone().unwrap_or_default();
    for var in &a.env {
        let key = var.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(var.clone());
    }
    p.set_env(Some(env));
    let mut user = p.user().clone();
    if let Some(spec) = &a.user {
        let (uid, gid) = parse_user(spec)?;
        user.set_uid(uid);
        if let Some(gid) = gid {
            user.set_gid(gid);
        }
    }
    if !a.additional_gids.is_empty() {
        user.set_additional_gids(Some(a.additional_gids.clone()));
    }
    p.set_user(user);
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(profile) = &a.apparmor {
        p.set_apparmor_profile(Some(profile.clone()));
    }
    if let Some(label) = &a.process_label {
        p.set_selinux_label(Some(label.clone()));
    }
    if !a.cap.is_empty() {
        p.set_capabilities(Some(add_caps(
            p.capabilities().clone().unwrap_or_default(),
            &a.cap,
        )?));
    }
    Ok(p)
}

fn parse_user(s: &str) -> Result<(u32, Option<u32>), CmdError> {
    let bad = || CmdError::Usage {
        what: format!("--user {s:?}: expected uid[:gid]"),
    };
    let (uid, gid) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let uid = uid.parse().map_err(|_| bad())?;
    let gid = gid.map(|g| g.parse().map_err(|_| bad())).transpose()?;
    Ok((uid, gid))
}

fn add_caps(mut caps: LinuxCapabilities, names: &[String]) -> Result<LinuxCapabilities, CmdError> {
    for name in names {
        let cap: Capability = serde_json::from_value(serde_json::Value::String(name.clone()))
            .map_err(|_| CmdError::Usage {
                what: format!("--cap {name:?}: unknown capability"),
            })?;
        let add = |set: &Option<oci_spec::runtime::Capabilities>| {
            let mut set = set.clone().unwrap_or_default();
            set.insert(cap);
            Some(set)
        };
        caps.set_bounding(add(caps.bounding()));
        caps.set_effective(add(caps.effective()));
        caps.set_permitted(add(caps.permitted()));
    }
    Ok(caps)
}

impl From<ConfigError> for CmdError {
    fn from(e: ConfigError) -> Self {
        CmdError::Config(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users() {
        assert_eq!(parse_user("1000").unwrap(), (1000, None));
        assert_eq!(parse_user("1000:20").unwrap(), (1000, Some(20)));
        assert!(parse_user("root").is_err());
    }

    #[test]
    fn caps_are_added_to_three_sets() {
        let caps = add_caps(LinuxCapabilities::default(), &["CAP_SYS_ADMIN".into()]).unwrap();
        assert!(caps
            .bounding()
            .as_ref()
            .unwrap()
            .contains(&Capability::SysAdmin));
        assert!(caps
            .permitted()
            .as_ref()
            .unwrap()
            .contains(&Capability::SysAdmin));
        assert!(add_caps(LinuxCapabilities::default(), &["CAP_NOPE".into()]).is_err());
    }
}
