//! hull's default AppArmor profile, `hull-default` (runtime/apparmor/hull-default), which
//! CRI's RuntimeDefault maps to. hull-cri loads it at start-up when the host has AppArmor
//! and the profile is not loaded yet, as containerd loads its own: a node then needs no
//! separate installation step for pods to get the default confinement.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::spec::{HostFacts, HULL_APPARMOR_PROFILE};

/// The profile's text, compiled in so that the binary and its profile cannot drift apart.
pub const PROFILE: &str = include_str!("../../runtime/apparmor/hull-default");

/// Debian's (and most distributions') AppArmor parser.
pub const PARSER: &str = "/usr/sbin/apparmor_parser";

#[derive(Debug, thiserror::Error)]
pub enum AppArmorError {
    #[error("cannot run {parser} to load the AppArmor profile {HULL_APPARMOR_PROFILE}")]
    Spawn {
        parser: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{parser} refused the AppArmor profile {HULL_APPARMOR_PROFILE} ({status}): {stderr}")]
    Refused {
        parser: PathBuf,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// What [`ensure_default`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    NoAppArmor,
    AlreadyLoaded,
    Loaded,
}

/// Loads `hull-default` through `parser` unless AppArmor is off or the profile is loaded.
pub async fn ensure_default(host: &HostFacts, parser: &Path) -> Result<Outcome, AppArmorError> {
    if !host.apparmor_enabled {
        return Ok(Outcome::NoAppArmor);
    }
    if host
        .apparmor_profiles
        .iter()
        .any(|p| p == HULL_APPARMOR_PROFILE)
    {
        return Ok(Outcome::AlreadyLoaded);
    }
    let spawn_err = |source| AppArmorError::Spawn {
        parser: parser.to_owned(),
        source,
    };
    // Read from stdin: nothing to install on disk, and no cache to go stale.
    let mut child = tokio::process::Command::new(parser)
        .args(["--replace", "--skip-cache"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A parser that refuses early exits before reading it all (EPIPE here): its exit
        // status and stderr below say why, which "cannot run" would hide.
        match stdin.write_all(PROFILE.as_bytes()).await {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(spawn_err(e)),
            _ => {}
        }
    }
    let out = child.wait_with_output().await.map_err(spawn_err)?;
    if !out.status.success() {
        return Err(AppArmorError::Refused {
            parser: parser.to_owned(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(Outcome::Loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(enabled: bool, profiles: &[&str]) -> HostFacts {
        let mut h = HostFacts::detect();
        h.apparmor_enabled = enabled;
        h.apparmor_profiles = profiles.iter().map(|p| p.to_string()).collect();
        h
    }

    #[tokio::test]
    async fn loads_only_where_needed_and_reports_a_refusal() {
        let nowhere = Path::new("/nonexistent/apparmor_parser");
        let h = host(false, &[]);
        assert_eq!(
            ensure_default(&h, nowhere).await.unwrap(),
            Outcome::NoAppArmor
        );
        let h = host(true, &["other", HULL_APPARMOR_PROFILE]);
        assert_eq!(
            ensure_default(&h, nowhere).await.unwrap(),
            Outcome::AlreadyLoaded
        );
        let h = host(true, &["other"]);
        let e = ensure_default(&h, nowhere).await.unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent/apparmor_parser") && e.contains("hull-default"),
            "{e}"
        );
        // A parser that fails: its stderr is in the error.
        let e = ensure_default(&h, Path::new("/bin/false"))
            .await
            .unwrap_err();
        assert!(matches!(e, AppArmorError::Refused { .. }), "{e}");
    }

    #[test]
    fn the_profile_is_named_as_runtime_default_expects() {
        assert!(PROFILE.contains(&format!("profile {HULL_APPARMOR_PROFILE} ")));
    }
}
