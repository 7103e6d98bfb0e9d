//! Status and RuntimeConfig.

use std::collections::HashMap;

use super::Runtime;
use crate::api::*;

impl Runtime {
    /// Status: the runtime is ready once serving; the network only when CNI is configured.
    pub(super) fn status(&self, verbose: bool) -> StatusResponse {
        let net = self.cni.status();
        let conditions = vec![
            RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: net.is_ok(),
                reason: if net.is_ok() {
                    String::new()
                } else {
                    "NetworkPluginNotReady".into()
                },
                message: net
                    .err()
                    .map(|e| crate::monitor::chain(&e))
                    .unwrap_or_default(),
            },
        ];
        let mut info = HashMap::new();
        if verbose {
            info.insert(
                "config".to_string(),
                serde_json::json!({
                    "root": self.paths.root,
                    "run": self.paths.run,
                    "handlers": self.handlers.names().collect::<Vec<_>>(),
                })
                .to_string(),
            );
        }
        StatusResponse {
            status: Some(RuntimeStatus { conditions }),
            info,
            runtime_handlers: self
                .handlers
                .names()
                .map(|name| RuntimeHandler {
                    name: name.to_string(),
                    features: Some(RuntimeHandlerFeatures {
                        recursive_read_only_mounts: false,
                        user_namespaces: false,
                    }),
                })
                .collect(),
            // spec::user resolves groups under either policy, and ContainerStatus reports
            // the resulting identity, which is what the feature promises.
            features: Some(RuntimeFeatures {
                supplemental_groups_policy: true,
                ..Default::default()
            }),
        }
    }

    /// RuntimeConfig: this daemon drives cgroups through the filesystem. The value must be
    /// explicit: enum value 0 means systemd, and kubelet adopts the runtime's answer.
    pub(super) fn runtime_config(&self) -> RuntimeConfigResponse {
        RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration {
                cgroup_driver: CgroupDriver::Cgroupfs as i32,
            }),
        }
    }
}
