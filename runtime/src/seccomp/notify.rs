//! Handing the notify listener fd to a seccomp agent, with runc's protocol:
//! connect to `listenerPath` (a unix stream socket) and send the container
//! process state JSON in one message carrying the fd as SCM_RIGHTS.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
use serde::Serialize;

use super::SeccompError;

/// runtime-spec's `ContainerProcessState`, in runc's field order.
#[derive(Serialize)]
struct ContainerProcessState<'a> {
    #[serde(rename = "ociVersion")]
    oci_version: &'a str,
    /// Names of the fds sent, by position in SCM_RIGHTS.
    fds: [&'a str; 1],
    pid: i32,
    #[serde(skip_serializing_if = "str::is_empty")]
    metadata: &'a str,
    state: &'a serde_json::Value,
}

/// The JSON runc sends to the agent: `state` is the runtime-spec state of the
/// container, `pid` the process the filter was installed in, `metadata`
/// `listenerMetadata` (left out when empty).
pub fn process_state_json(pid: i32, metadata: &str, state: &serde_json::Value) -> Vec<u8> {
    let oci_version = state["ociVersion"].as_str().unwrap_or("1.2.0");
    let msg = ContainerProcessState {
        oci_version,
        fds: ["seccompFd"],
        pid,
        metadata,
        state,
    };
    serde_json::to_vec(&msg).expect("a struct of strings and JSON values serialises")
}

/// Connects to the agent at `path` and sends `state_json` with `fd`.
pub fn send_to_listener(
    path: &Path,
    fd: BorrowedFd,
    state_json: &[u8],
) -> Result<(), SeccompError> {
    let err = |source: io::Error| SeccompError::ListenerSend {
        path: path.to_path_buf(),
        source,
    };
    let stream = UnixStream::connect(path).map_err(|source| SeccompError::ListenerConnect {
        path: path.to_path_buf(),
        source,
    })?;
    let fds = [fd.as_raw_fd()];
    let cmsgs = [ControlMessage::ScmRights(&fds)];
    let mut sent = loop {
        let iov = [IoSlice::new(state_json)];
        match sendmsg::<UnixAddr>(
            stream.as_raw_fd(),
            &iov,
            &cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other.map_err(|e| err(e.into()))?,
        }
    };
    // A stream socket may take a long message in parts; the fd went with the first.
    while sent < state_json.len() {
        let iov = [IoSlice::new(&state_json[sent..])];
        match sendmsg::<UnixAddr>(stream.as_raw_fd(), &iov, &[], MsgFlags::MSG_NOSIGNAL, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(0) => return Err(err(io::ErrorKind::WriteZero.into())),
            other => sent += other.map_err(|e| err(e.into()))?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::IoSliceMut;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixListener;

    use nix::sys::socket::{recvmsg, ControlMessageOwned};
    use serde_json::json;

    use super::*;

    #[test]
    fn state_json_has_runc_fields() {
        let state = json!({"ociVersion": "1.2.0", "id": "c1", "status": "creating", "pid": 7});
        let v: serde_json::Value =
            serde_json::from_slice(&process_state_json(7, "m", &state)).unwrap();
        assert_eq!(
            v,
            json!({"ociVersion": "1.2.0", "fds": ["seccompFd"], "pid": 7, "metadata": "m", "state": state})
        );
        let v: serde_json::Value =
            serde_json::from_slice(&process_state_json(7, "", &state)).unwrap();
        assert!(
            v.get("metadata").is_none(),
            "empty metadata is omitted: {v}"
        );
    }

    #[test]
    fn listener_receives_json_and_fd() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let file = tempfile::tempfile().unwrap();
        let payload = vec![b'x'; 300_000];
        let agent = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 400_000];
            let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<UnixAddr>(
                conn.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::empty(),
            )
            .unwrap();
            let fd = match msg.cmsgs().unwrap().next() {
                Some(ControlMessageOwned::ScmRights(fds)) => fds[0],
                other => panic!("no fd: {other:?}"),
            };
            let mut total = msg.bytes;
            let mut rest = Vec::new();
            std::io::Read::read_to_end(&mut &conn, &mut rest).unwrap();
            total += rest.len();
            let st = nix::sys::stat::fstat(fd).unwrap();
            nix::unistd::close(fd).unwrap();
            ((st.st_dev, st.st_ino), total)
        });
        send_to_listener(&path, file.as_fd(), &payload).unwrap();
        let (received, total) = agent.join().unwrap();
        assert_eq!(total, payload.len());
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata().unwrap();
        assert_eq!(
            received,
            (m.dev(), m.ino()),
            "the fd received is the file sent"
        );
    }

    #[test]
    fn missing_listener_is_a_connect_error() {
        let file = tempfile::tempfile().unwrap();
        let err = send_to_listener(Path::new("/nonexistent/agent.sock"), file.as_fd(), b"{}")
            .unwrap_err();
        assert!(matches!(err, SeccompError::ListenerConnect { .. }), "{err}");
    }
}
