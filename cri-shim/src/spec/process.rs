//! `process`: the program, its environment, directory, terminal and credentials.

use oci_spec::runtime::{Process, ProcessBuilder, UserBuilder};

use super::namespaces::Modes;
use super::security::{self, Caps};
use super::user::ResolvedUser;
use super::{built, ContainerContext, HostFacts, PodContext, SpecError};
use crate::api;
use crate::manifest::ImageConfig;

/// The PATH of a container whose image sets none (containerd's and Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Builds `process`.
pub fn build(
    pod: &PodContext,
    ctr: &ContainerContext,
    sc: &api::LinuxContainerSecurityContext,
    host: &HostFacts,
    user: &ResolvedUser,
    caps: &Caps,
    modes: &Modes,
) -> Result<Process, SpecError> {
    let cfg = ctr.config;
    let hostname = if pod.config.hostname.is_empty() && modes.host_network {
        host.hostname.clone()
    } else {
        pod.config.hostname.clone()
    };
    let oci_user = UserBuilder::default()
        .uid(user.uid)
        .gid(user.gid)
        .additional_gids(user.additional_gids.clone());
    let mut p = ProcessBuilder::default()
        .terminal(cfg.tty)
        .args(args(cfg, ctr.image)?)
        .env(env(cfg, ctr.image, &hostname)?)
        .cwd(cwd(cfg, ctr.image)?)
        .user(built("process.user", oci_user.build())?)
        .capabilities(caps.to_oci()?)
        .no_new_privileges(sc.no_new_privs);
    if let Some(profile) = security::apparmor(sc, host)? {
        p = p.apparmor_profile(profile);
    }
    let res = cfg.linux.as_ref().and_then(|l| l.resources.as_ref());
    if let Some(adj) = res.map(|r| r.oom_score_adj).filter(|a| *a != 0) {
        let field = "linux.resources.oom_score_adj";
        let adj = i32::try_from(adj)
            .ok()
            .filter(|a| (-1000..=1000).contains(a))
            .ok_or_else(|| SpecError::invalid(field, adj, "must be between -1000 and 1000"))?;
        // kubelet asks -997 for Guaranteed pods; without CAP_SYS_RESOURCE the kernel
        // refuses anything below hull-cri's own value, so that is the floor (containerd's
        // restrict_oom_score_adj does the same).
        p = p.oom_score_adj(adj.max(host.min_oom_score_adj));
    }
    let mut p = built("process", p.build())?;
    // The builder's default carries RLIMIT_NOFILE 1024; like containerd's CRI, the
    // container inherits its limits instead (from the monitor, hence from hull-cri).
    p.set_rlimits(None);
    Ok(p)
}

/// Docker's and kubelet's rule: `command` replaces the image's Entrypoint and drops its
/// Cmd; `args` replaces Cmd only.
pub fn args(cfg: &api::ContainerConfig, image: &ImageConfig) -> Result<Vec<String>, SpecError> {
    let run = image.config.clone().unwrap_or_default();
    let entrypoint = run.entrypoint.unwrap_or_default();
    let cmd = run.cmd.unwrap_or_default();
    let out: Vec<String> = if !cfg.command.is_empty() {
        cfg.command.iter().chain(&cfg.args).cloned().collect()
    } else if !cfg.args.is_empty() {
        entrypoint.into_iter().chain(cfg.args.clone()).collect()
    } else {
        entrypoint.into_iter().chain(cmd).collect()
    };
    if out.is_empty() {
        return Err(SpecError::invalid(
            "command",
            "",
            "no command given and the image has no Entrypoint or Cmd",
        ));
    }
    if let Some(a) = out.iter().find(|a| a.contains('\0')) {
        return Err(SpecError::invalid("command", a, "contains a NUL byte"));
    }
    Ok(out)
}

/// Sets `key=value` in `env`, in place if the key is there, else at the end.
fn set(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

/// The default PATH and HOSTNAME, overlaid by the image's Env, overlaid by the
/// request's envs (TERM=xterm first for a terminal), each replacing a variable in place.
pub fn env(
    cfg: &api::ContainerConfig,
    image: &ImageConfig,
    hostname: &str,
) -> Result<Vec<String>, SpecError> {
    let mut out = Vec::new();
    set(&mut out, "PATH", DEFAULT_PATH);
    set(&mut out, "HOSTNAME", hostname);
    let image_env = image.config.as_ref().and_then(|c| c.env.clone());
    for var in image_env.unwrap_or_default() {
        match var.split_once('=') {
            Some((k, v)) if !k.is_empty() && !var.contains('\0') => set(&mut out, k, v),
            _ => {
                return Err(SpecError::invalid(
                    "image config Env",
                    var,
                    "must be NAME=value",
                ))
            }
        }
    }
    if cfg.tty {
        set(&mut out, "TERM", "xterm");
    }
    for (i, kv) in cfg.envs.iter().enumerate() {
        let field = format!("envs[{i}]");
        if kv.key.is_empty() || kv.key.contains('=') || kv.key.contains('\0') {
            return Err(SpecError::invalid(
                format!("{field}.key"),
                &kv.key,
                "must be a non-empty name without '=' or NUL",
            ));
        }
        let value = std::str::from_utf8(&kv.value)
            .ok()
            .filter(|v| !v.contains('\0'))
            .ok_or_else(|| {
                SpecError::invalid(
                    format!("{field}.value"),
                    String::from_utf8_lossy(&kv.value),
                    "must be UTF-8 without NUL",
                )
            })?;
        set(&mut out, &kv.key, value);
    }
    Ok(out)
}

/// The request's working dir, else the image's, else `/`.
pub fn cwd(cfg: &api::ContainerConfig, image: &ImageConfig) -> Result<String, SpecError> {
    let image_dir = image.config.as_ref().and_then(|c| c.working_dir.clone());
    let (field, dir) = if !cfg.working_dir.is_empty() {
        ("working_dir", cfg.working_dir.clone())
    } else {
        match image_dir.filter(|d| !d.is_empty()) {
            Some(d) => ("image config WorkingDir", d),
            None => return Ok("/".into()),
        }
    };
    if !dir.starts_with('/') {
        return Err(SpecError::invalid(field, dir, "must be an absolute path"));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::RunConfig;

    fn image(ep: &[&str], cmd: &[&str], env: &[&str], wd: &str) -> ImageConfig {
        let mut img: ImageConfig =
            serde_json::from_str(r#"{"rootfs":{"type":"layers","diff_ids":[]}}"#).unwrap();
        let v = |s: &[&str]| Some(s.iter().map(|x| x.to_string()).collect());
        img.config = Some(RunConfig {
            entrypoint: v(ep),
            cmd: v(cmd),
            env: v(env),
            working_dir: Some(wd.to_string()),
            ..Default::default()
        });
        img
    }

    fn cfg(command: &[&str], args: &[&str]) -> api::ContainerConfig {
        api::ContainerConfig {
            command: command.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn command_and_args_merge_like_kubelet() {
        let img = image(&["/ep", "-x"], &["c1", "c2"], &[], "");
        assert_eq!(
            args(&cfg(&[], &[]), &img).unwrap(),
            ["/ep", "-x", "c1", "c2"]
        );
        assert_eq!(args(&cfg(&[], &["a"]), &img).unwrap(), ["/ep", "-x", "a"]);
        assert_eq!(args(&cfg(&["/cmd"], &[]), &img).unwrap(), ["/cmd"]);
        assert_eq!(
            args(&cfg(&["/cmd"], &["a", "b"]), &img).unwrap(),
            ["/cmd", "a", "b"]
        );
        let only_cmd = image(&[], &["sh"], &[], "");
        assert_eq!(args(&cfg(&[], &["top"]), &only_cmd).unwrap(), ["top"]);
        let empty = image(&[], &[], &[], "");
        let e = args(&cfg(&[], &[]), &empty).unwrap_err().to_string();
        assert!(e.starts_with("command"), "{e}");
    }

    #[test]
    fn env_overlays_in_place() {
        let img = image(&[], &[], &["PATH=/img/bin", "A=1", "B=2=x"], "");
        let mut c = cfg(&[], &[]);
        c.envs = vec![
            api::KeyValue {
                key: "A".into(),
                value: b"override".to_vec(),
            },
            api::KeyValue {
                key: "C".into(),
                value: b"3".to_vec(),
            },
        ];
        c.tty = true;
        assert_eq!(
            env(&c, &img, "pod-host").unwrap(),
            [
                "PATH=/img/bin",
                "HOSTNAME=pod-host",
                "A=override",
                "B=2=x",
                "TERM=xterm",
                "C=3"
            ]
        );
        let plain = image(&[], &[], &[], "");
        let e = env(&cfg(&[], &[]), &plain, "h").unwrap();
        assert_eq!(e[0], format!("PATH={DEFAULT_PATH}"));
        c.envs[1].key = "BAD=KEY".into();
        let err = env(&c, &img, "h").unwrap_err().to_string();
        assert!(
            err.contains("envs[1].key") && err.contains("BAD=KEY"),
            "{err}"
        );
        c.envs[1] = api::KeyValue {
            key: "K".into(),
            value: vec![0xff],
        };
        assert!(env(&c, &img, "h")
            .unwrap_err()
            .to_string()
            .contains("envs[1].value"));
    }

    #[test]
    fn working_dir_precedence() {
        let img = image(&[], &["sh"], &[], "/srv");
        assert_eq!(cwd(&cfg(&[], &[]), &img).unwrap(), "/srv");
        let mut c = cfg(&[], &[]);
        c.working_dir = "/work".into();
        assert_eq!(cwd(&c, &img).unwrap(), "/work");
        assert_eq!(cwd(&cfg(&[], &[]), &image(&[], &[], &[], "")).unwrap(), "/");
        c.working_dir = "rel".into();
        assert!(cwd(&c, &img)
            .unwrap_err()
            .to_string()
            .contains("working_dir"));
    }
}
