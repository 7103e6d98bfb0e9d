//! Root integration test of image volumes (`Mount.image`) through hull-cri's RuntimeService:
//! the image's files are visible read-only and executable at the container path, a sub path
//! is bound instead of the root, ContainerStatus reports the image id, bad requests fail
//! with the right code and leave no mount behind, and RemoveContainer unmounts the volume.
//! Skips with a reason when not root or a tool is missing (see `common/`).

// Not every helper of the shared harness is used here.
#[allow(dead_code)]
mod common;

use common::{assert_err, image, sh_ctr, Env, NetOpts};
use hull_cri::api::*;
use tonic::Code;

fn volume(image_name: &str, dest: &str, sub: &str) -> Mount {
    Mount {
        container_path: dest.into(),
        readonly: true,
        image: Some(image(image_name)),
        image_sub_path: sub.into(),
        ..Default::default()
    }
}

async fn exec(env: &mut Env, id: &str, cmd: &[&str]) -> ExecSyncResponse {
    env.rt
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 10,
        })
        .await
        .expect("ExecSync")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_volumes_mount_read_only_and_go_with_the_container() {
    let Some(mut env) = Env::start(NetOpts::default()).await else {
        return;
    };
    let busybox = env.pull_busybox().await;
    let image_id = env
        .img
        .image_status(ImageStatusRequest {
            image: Some(image(&busybox)),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
        .expect("busybox is pulled")
        .id;
    let pod = env.pod_config("vols");
    let pod_id = env.run_pod(pod.clone()).await.unwrap();

    // Bad requests: nothing is mounted, nothing is left.
    let mut c = sh_ctr("c", &busybox, "sleep 100");
    c.mounts
        .push(volume("127.0.0.1:1/hull/never-pulled:1", "/v", ""));
    let r = env.create(&pod_id, &pod, c).await;
    assert_err(r, Code::NotFound, "never-pulled");
    env.assert_no_ctr();
    let mut c = sh_ctr("c", &busybox, "sleep 100");
    let mut rw = volume(&busybox, "/v", "");
    rw.readonly = false;
    c.mounts.push(rw);
    assert_err(
        env.create(&pod_id, &pod, c).await,
        Code::InvalidArgument,
        "mounts[0].readonly",
    );
    env.assert_no_ctr();
    // A missing sub path fails after the volume was mounted: the mount must go again.
    let mut c = sh_ctr("c", &busybox, "sleep 100");
    c.mounts.push(volume(&busybox, "/v", "not-existing"));
    assert_err(
        env.create(&pod_id, &pod, c).await,
        Code::InvalidArgument,
        "not-existing",
    );
    env.assert_no_ctr();

    let mut c = sh_ctr("c", &busybox, "sleep 100");
    c.mounts.push(volume(&busybox, "/mnt/image", ""));
    c.mounts.push(volume(&busybox, "/mnt/etc", "etc"));
    let id = env.create(&pod_id, &pod, c).await.unwrap();
    let st = env.ctr_status(&id).await;
    let refs: Vec<String> = st
        .mounts
        .iter()
        .map(|m| {
            m.image
                .as_ref()
                .map(|i| i.image_ref.clone())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        refs,
        [image_id.clone(), image_id],
        "image_ref of each volume"
    );
    env.rt
        .start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    let r = exec(
        &mut env,
        &id,
        &["/mnt/image/bin/ls", "/mnt/image/etc/passwd"],
    )
    .await;
    assert_eq!(r.exit_code, 0, "executable from the volume: {r:?}");
    let r = exec(&mut env, &id, &["ls", "/mnt/etc/passwd"]).await;
    assert_eq!(r.exit_code, 0, "the sub path is the mount's root: {r:?}");
    let r = exec(&mut env, &id, &["ls", "/mnt/etc/etc"]).await;
    assert_ne!(r.exit_code, 0, "not the image's root: {r:?}");
    let r = exec(&mut env, &id, &["touch", "/mnt/image/new"]).await;
    assert_ne!(r.exit_code, 0, "writable image volume: {r:?}");
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("Read-only file system"),
        "{r:?}"
    );
    // Volumes are mounted on the host below the container's directory until removal.
    assert!(!common::scan::mounts_under(&env.root().join("containers")).is_empty());
    env.rt
        .remove_container(RemoveContainerRequest { container_id: id })
        .await
        .unwrap();
    env.assert_no_ctr();
    env.remove_pod_and_assert_clean(pod_id).await;
}
