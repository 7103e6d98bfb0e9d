//! Running one CNI plugin: the `CNI_*` environment, the config on stdin, the result or the
//! error object on stdout.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::CniError;

/// How long one plugin may run before it is killed.
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// PATH given to plugins: `bridge` and `portmap` run `iptables`.
const PLUGIN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A CNI command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `ADD`.
    Add,
    /// `DEL`.
    Del,
}

impl Op {
    /// The value of `CNI_COMMAND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Add => "ADD",
            Op::Del => "DEL",
        }
    }
}

/// The per-call environment shared by every plugin of one ADD or DEL.
pub struct CallEnv {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`.
    pub netns: PathBuf,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: String,
    /// `CNI_PATH`.
    pub path: String,
}

/// The error object a failing plugin prints on stdout.
#[derive(Deserialize)]
struct PluginError {
    #[serde(default)]
    code: u64,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

/// Finds the binary of plugin `ty` in `dirs` (first match wins).
pub fn find_plugin(ty: &str, dirs: &[PathBuf]) -> Result<PathBuf, CniError> {
    dirs.iter()
        .map(|d| d.join(ty))
        .find(|p| p.is_file())
        .ok_or_else(|| CniError::PluginNotFound {
            plugin: ty.to_owned(),
            dirs: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(":"),
        })
}

/// Runs `binary` (plugin `ty`) for `op` with `stdin`; returns its stdout on success.
pub async fn run(
    ty: &str,
    binary: &Path,
    op: Op,
    env: &CallEnv,
    stdin: &[u8],
) -> Result<Vec<u8>, CniError> {
    let mut child = tokio::process::Command::new(binary)
        .env_clear()
        .env("CNI_COMMAND", op.as_str())
        .env("CNI_CONTAINERID", &env.container_id)
        .env("CNI_NETNS", &env.netns)
        .env("CNI_IFNAME", &env.ifname)
        .env("CNI_ARGS", &env.args)
        .env("CNI_PATH", &env.path)
        .env("PATH", PLUGIN_PATH)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CniError::Spawn {
            plugin: ty.to_owned(),
            source,
        })?;
    let mut input = child.stdin.take().expect("stdin is piped");
    let io = async {
        // A plugin that exits without reading all of stdin makes this fail with EPIPE; its
        // exit status and output say more, so the write error is not the one reported.
        let _ = input.write_all(stdin).await;
        drop(input);
        child.wait_with_output().await
    };
    let out = tokio::time::timeout(PLUGIN_TIMEOUT, io)
        .await
        .map_err(|_| CniError::Timeout {
            plugin: ty.to_owned(),
            command: op.as_str(),
            secs: PLUGIN_TIMEOUT.as_secs(),
        })?
        .map_err(|source| CniError::Spawn {
            plugin: ty.to_owned(),
            source,
        })?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let (code, msg) = match serde_json::from_slice::<PluginError>(&out.stdout) {
        Ok(e) if e.details.is_empty() => (e.code, e.msg),
        Ok(e) => (e.code, format!("{}: {}", e.msg, e.details)),
        Err(_) => (
            0,
            format!(
                "{}; stderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ),
    };
    Err(CniError::Plugin {
        plugin: ty.to_owned(),
        command: op.as_str(),
        code,
        msg,
    })
}
