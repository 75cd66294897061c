//! Cloud Hypervisor's REST API, the subset keel uses, with the field names of its OpenAPI
//! document (`vmm/src/api/openapi/cloud-hypervisor.yaml`): `VmConfig` and its parts for
//! `PUT vm.create`, `VmInfo` from `GET vm.info`, `VmmPingResponse` from `GET vmm.ping`. And the
//! PURE construction of one instance's `VmConfig`: vCPUs from `resources.limits.cpu` (rounded
//! up, at least 1), memory from `resources.limits.memory` (default 256 MiB), the payload
//! (kernel + initramfs + command line, or firmware), the instance's own disk copy, one net
//! device on its tap, and the serial console to a file.

use serde::{Deserialize, Serialize};

use crate::model::desired::InstanceSpec;

use super::net::Lease;

/// Memory when the manifest sets none.
pub const DEFAULT_MEMORY: u64 = 256 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmConfig {
    pub cpus: CpusConfig,
    pub memory: MemoryConfig,
    pub payload: PayloadConfig,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<DiskConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub net: Vec<NetConfig>,
    pub serial: ConsoleConfig,
    pub console: ConsoleConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpusConfig {
    pub boot_vcpus: u32,
    pub max_vcpus: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryConfig {
    /// Bytes.
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initramfs: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskConfig {
    pub path: String,
    #[serde(default)]
    pub readonly: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetConfig {
    pub tap: String,
    /// The host side's address.
    pub ip: String,
    pub mask: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsoleMode {
    Off,
    Pty,
    Tty,
    File,
    Null,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleConfig {
    pub mode: ConsoleMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// `GET vm.info`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VmInfo {
    pub state: VmState,
    #[serde(default)]
    pub memory_actual_size: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmState {
    Created,
    Running,
    Shutdown,
    Paused,
    BreakPoint,
}

/// `GET vmm.ping`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VmmPingResponse {
    pub version: String,
    #[serde(default)]
    pub pid: Option<i64>,
}

/// How the guest boots, after the operator's defaults and the manifest's `vm` block are merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// Direct kernel boot; `cmdline` is the operator's or the manifest's, before keel adds
    /// the network parameter.
    Kernel {
        kernel: String,
        initramfs: Option<String>,
        cmdline: String,
    },
    Firmware {
        firmware: String,
    },
}

/// Where one instance's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    /// Its private copy of the manifest's disk image, if it has one.
    pub disk: Option<String>,
    pub serial: String,
}

/// PURE: the `vm.create` body of `instance`.
pub fn vm_config(
    instance: &InstanceSpec,
    boot: &Boot,
    lease: &Lease,
    tap: &str,
    files: &Files,
) -> VmConfig {
    let limits = instance
        .spec
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref());
    let vcpus = limits
        .and_then(|l| l.cpu)
        .map_or(1, |cpu| {
            u32::try_from(cpu.millicores().div_ceil(1000)).unwrap_or(u32::MAX)
        })
        .max(1);
    let memory = limits
        .and_then(|l| l.memory)
        .map_or(DEFAULT_MEMORY, |m| m.bytes());
    let payload = match boot {
        Boot::Kernel {
            kernel,
            initramfs,
            cmdline,
        } => PayloadConfig {
            firmware: None,
            kernel: Some(kernel.clone()),
            cmdline: Some(
                format!("{} {}", cmdline.trim(), lease.kernel_ip())
                    .trim()
                    .to_owned(),
            ),
            initramfs: initramfs.clone(),
        },
        Boot::Firmware { firmware } => PayloadConfig {
            firmware: Some(firmware.clone()),
            kernel: None,
            cmdline: None,
            initramfs: None,
        },
    };
    VmConfig {
        cpus: CpusConfig {
            boot_vcpus: vcpus,
            max_vcpus: vcpus,
        },
        memory: MemoryConfig { size: memory },
        payload,
        disks: files
            .disk
            .iter()
            .map(|path| DiskConfig {
                path: path.clone(),
                readonly: false,
            })
            .collect(),
        net: vec![NetConfig {
            tap: tap.to_owned(),
            ip: lease.host.to_string(),
            mask: lease.netmask.to_string(),
        }],
        serial: ConsoleConfig {
            mode: ConsoleMode::File,
            file: Some(files.serial.clone()),
        },
        console: ConsoleConfig {
            mode: ConsoleMode::Off,
            file: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::desired::DeploymentId;
    use crate::runtime::cloud_hypervisor::net::Network;

    fn instance(resources: serde_json::Value) -> InstanceSpec {
        InstanceSpec {
            deployment: DeploymentId::new("demo", "vm"),
            generation: 1,
            ordinal: 0,
            run: None,
            template: "t".into(),
            spec: serde_json::from_value(serde_json::json!({
                "name": "vm", "namespace": "demo", "runtime": "cloud-hypervisor",
                "resources": resources,
            }))
            .unwrap(),
            mounted_configs: BTreeMap::new(),
        }
    }

    fn files() -> Files {
        Files {
            disk: None,
            serial: "/var/lib/keel/vms/keel-demo-vm-1-0/serial.log".into(),
        }
    }

    #[test]
    fn a_kernel_boot_body_is_exactly_what_the_api_expects() {
        let lease = Network::default().lease(3);
        let boot = Boot::Kernel {
            kernel: "/srv/vmlinux".into(),
            initramfs: Some("/srv/initramfs.cpio".into()),
            cmdline: "console=ttyS0 quiet".into(),
        };
        let body = vm_config(
            &instance(serde_json::json!({"limits": {"cpu": "1.5", "memory": "512Mi"}})),
            &boot,
            &lease,
            "kt0123456789ab",
            &files(),
        );
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({
                "cpus": {"boot_vcpus": 2, "max_vcpus": 2},
                "memory": {"size": 536870912},
                "payload": {
                    "kernel": "/srv/vmlinux",
                    "cmdline": "console=ttyS0 quiet ip=10.213.0.14::10.213.0.13:255.255.255.252::eth0:off",
                    "initramfs": "/srv/initramfs.cpio"
                },
                "net": [{"tap": "kt0123456789ab", "ip": "10.213.0.13", "mask": "255.255.255.252"}],
                "serial": {"mode": "File", "file": "/var/lib/keel/vms/keel-demo-vm-1-0/serial.log"},
                "console": {"mode": "Off"}
            })
        );
    }

    #[test]
    fn a_firmware_boot_of_a_disk_copy_defaults_to_one_vcpu_and_256_mib() {
        let lease = Network::default().lease(0);
        let boot = Boot::Firmware {
            firmware: "/srv/hypervisor-fw".into(),
        };
        let files = Files {
            disk: Some("/var/lib/keel/vms/x/disk.raw".into()),
            ..files()
        };
        let body = vm_config(
            &instance(serde_json::Value::Null),
            &boot,
            &lease,
            "kt1",
            &files,
        );
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json["cpus"],
            serde_json::json!({"boot_vcpus": 1, "max_vcpus": 1})
        );
        assert_eq!(json["memory"]["size"], 268435456);
        assert_eq!(
            json["payload"],
            serde_json::json!({"firmware": "/srv/hypervisor-fw"})
        );
        assert_eq!(
            json["disks"],
            serde_json::json!([{"path": "/var/lib/keel/vms/x/disk.raw", "readonly": false}])
        );
    }

    #[test]
    fn vm_info_and_ping_answers_parse() {
        let info: VmInfo = serde_json::from_str(
            r#"{"config": {"cpus": {"boot_vcpus": 1}}, "state": "Running", "memory_actual_size": 268435456, "device_tree": {}}"#,
        )
        .unwrap();
        assert_eq!(info.state, VmState::Running);
        let ping: VmmPingResponse = serde_json::from_str(
            r#"{"build_version": "v54.0.0", "version": "54.0.0", "pid": 42, "features": ["kvm"]}"#,
        )
        .unwrap();
        assert_eq!(ping.pid, Some(42));
    }
}
