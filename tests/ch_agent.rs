//! The agent with its Cloud Hypervisor runtime: on a host that cannot run it, microVM
//! deployments hold with the reason while Docker ones run; with a VMM binary (here the fake
//! one) and `/dev/kvm`, the agent runs microVMs — each with its own /30 — and removes them,
//! process and files, when they leave the repository.

mod support;

use std::path::Path;

use serde_json::Value;
use support::binary::wait_for;
use support::host::Host;

fn microvm(host: &Host, name: &str, extra: &str) -> String {
    let kernel = host.dir.path().join("vmlinux");
    let initramfs = host.dir.path().join("initramfs.cpio");
    std::fs::write(&kernel, b"a kernel").unwrap();
    std::fs::write(&initramfs, b"an initramfs").unwrap();
    format!(
        "  {name}:\n    name: {name}\n    namespace: {}\n    runtime: cloud-hypervisor\n    vm:\n      kernel: {}\n      initramfs: {}\n{extra}",
        host.ns.0,
        kernel.display(),
        initramfs.display()
    )
}

const PLAIN: &str = "    command: [sh, -c, \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n";

fn deployment(agent: &support::binary::AgentProcess, host: &Host, name: &str) -> Option<Value> {
    agent.get(&format!("/v1/deployments/{}/{name}", host.ns.0))
}

#[test]
fn without_cloud_hypervisor_microvms_hold_with_the_reason_and_containers_run() {
    let host = Host::new();
    let config = host.config_with(
        "agent",
        &host.node(),
        "[cloud_hypervisor]\nbinary = \"/nonexistent/cloud-hypervisor\"\n",
    );
    let manifests = format!(
        "deployments:\n{}{}",
        host.deployment("web", PLAIN),
        microvm(&host, "vm", "")
    );
    host.write("app.yaml", &manifests);
    let repo = host.repo();
    let agent = host.start_on("agent", repo.to_str().unwrap(), &config, "info");
    wait_for("web to run and vm to hold", 90, || {
        deployment(&agent, &host, "web").is_some_and(|d| d["status"] == "running")
            && deployment(&agent, &host, "vm").is_some_and(|d| {
                d["waiting_on"]["kind"] == "runtime_unavailable"
                    && d["waiting_on"]["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("no cloud-hypervisor binary at /nonexistent"))
            })
    });
    assert_eq!(
        deployment(&agent, &host, "vm").unwrap()["status"],
        "pending"
    );
    let runtimes = agent.get("/v1/runtimes").unwrap();
    let ch = runtimes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["runtime"] == "cloud-hypervisor")
        .unwrap()
        .clone();
    assert_eq!(ch["available"], false, "{ch}");
    assert!(agent.terminate().success());
}

#[test]
fn an_agent_runs_microvms_on_a_vmm_and_removes_them_whole() {
    assert!(
        Path::new("/dev/kvm").exists(),
        "this test needs /dev/kvm (the microVM runtime is enabled only with it)"
    );
    let host = Host::new();
    let vms = host.dir.path().join("vms");
    let config = host.config_with(
        "agent",
        &host.node(),
        &format!(
            "[cloud_hypervisor]\nbinary = {:?}\nstate_dir = {:?}\n",
            env!("CARGO_BIN_EXE_keel-fake-vmm"),
            vms
        ),
    );
    host.write(
        "app.yaml",
        &format!(
            "deployments:\n{}",
            microvm(&host, "vm", "    replicas: 2\n")
        ),
    );
    let repo = host.repo();
    let agent = host.start_on("agent", repo.to_str().unwrap(), &config, "info");
    wait_for("two microVMs to run", 60, || {
        deployment(&agent, &host, "vm").is_some_and(|d| {
            d["status"] == "running" && d["instances"].as_array().is_some_and(|i| i.len() == 2)
        })
    });
    let detail = deployment(&agent, &host, "vm").unwrap();
    let ips: Vec<&str> = detail["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["ip"].as_str().unwrap())
        .collect();
    assert_ne!(ips[0], ips[1], "a /30 each");
    assert!(ips.iter().all(|ip| ip.starts_with("10.213.")), "{ips:?}");
    let dirs = || {
        std::fs::read_dir(&vms)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .count()
    };
    assert_eq!(dirs(), 2);

    // Scaled down to one: one VM goes, its VMM with it.
    host.write(
        "app.yaml",
        &format!(
            "deployments:\n{}",
            microvm(&host, "vm", "    replicas: 1\n")
        ),
    );
    wait_for("one microVM left", 60, || {
        dirs() == 1
            && deployment(&agent, &host, "vm").is_some_and(|d| {
                d["status"] == "running" && d["instances"].as_array().is_some_and(|i| i.len() == 1)
            })
    });
    let vmms = std::process::Command::new("pgrep")
        .args(["-f", &vms.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&vmms.stdout).lines().count(),
        1,
        "the removed VM's VMM is gone"
    );

    // Out of the repository: the last VM goes, process and files.
    host.write("app.yaml", "deployments: {}\n");
    wait_for("the microVMs to be removed", 60, || {
        // Deleted, then purged once its VM is gone.
        dirs() == 0 && deployment(&agent, &host, "vm").is_none()
    });
    let survivors = std::process::Command::new("pgrep")
        .args(["-f", &vms.display().to_string()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&survivors.stdout).trim().is_empty(),
        "a VMM outlived its instance"
    );
    assert!(agent.terminate().success());
}
