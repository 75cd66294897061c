//! PURE: what goes wrong with a VMM → `RuntimeError`, which classifies itself into the
//! deployment statuses of DESIGN §3.1. A boot file that does not exist (kernel, firmware,
//! initramfs, disk image) is `failed` — it will not appear by retrying; a VMM that refuses a
//! call or exits is a retried status; a tap that cannot be made is `network_error`.

use crate::runtime::RuntimeError;

/// What the adapter was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Spawn,
    Create,
    Boot,
    Shutdown,
    Info,
}

/// A non-2xx answer of the VMM's API, by operation, status and the VMM's message.
pub fn classify(op: Operation, status: u16, message: &str) -> RuntimeError {
    let m = message.to_lowercase();
    let network =
        m.contains("tap") || m.contains("netlink") || m.contains("operation not permitted");
    match op {
        Operation::Create | Operation::Boot if network => RuntimeError::Network(format!(
            "the VMM cannot set up the instance's tap ({message}); keel needs CAP_NET_ADMIN"
        )),
        Operation::Create | Operation::Boot
            if m.contains("memory")
                && (m.contains("cannot allocate") || m.contains("out of memory")) =>
        {
            RuntimeError::InsufficientResources {
                requested: "the VM's memory".to_owned(),
                available: format!("less ({message})"),
            }
        }
        Operation::Create | Operation::Boot => {
            RuntimeError::CreateRejected(format!("the VMM refused {op:?} ({status}): {message}"))
        }
        Operation::Spawn | Operation::Shutdown | Operation::Info => {
            RuntimeError::Other(format!("the VMM answered {op:?} with {status}: {message}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::status::DeploymentStatus as S;

    #[test]
    fn vmm_answers_classify_into_deployment_statuses() {
        let cases = [
            (
                Operation::Create,
                500,
                "Error creating tap: Operation not permitted (os error 1)",
                S::NetworkError,
            ),
            (
                Operation::Boot,
                500,
                "Cannot allocate memory for guest RAM",
                S::InsufficientResources,
            ),
            (
                Operation::Boot,
                500,
                "Error booting VM: InvalidPayload",
                S::CreateContainerError,
            ),
            (
                Operation::Create,
                400,
                "unknown field `cpu`",
                S::CreateContainerError,
            ),
            (Operation::Info, 404, "VM is not created", S::Error),
            (Operation::Shutdown, 500, "VM is not running", S::Error),
        ];
        for (op, status, message, expected) in cases {
            assert_eq!(
                classify(op, status, message).status(),
                expected,
                "{op:?} {message}"
            );
        }
        assert_eq!(
            RuntimeError::MissingFile {
                what: "kernel",
                path: "/srv/vmlinux".into()
            }
            .status(),
            S::Failed
        );
    }
}
