//! PURE: Docker's error responses → `RuntimeError`, by the operation that failed, the HTTP
//! status and the daemon's message. One table-tested function, so the rest of the adapter
//! never inspects error strings.

use crate::runtime::RuntimeError;

/// What the adapter was doing when Docker answered with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Pull,
    InspectImage,
    CreateNetwork,
    CreateContainer,
    StartContainer,
    Other,
}

/// Classifies an error response of the daemon.
pub fn classify(op: Operation, status: u16, message: &str, image: &str) -> RuntimeError {
    let m = message.to_lowercase();
    let pull = || RuntimeError::ImagePull {
        image: image.to_owned(),
        message: message.to_owned(),
    };
    match op {
        Operation::Pull => pull(),
        Operation::InspectImage if status == 404 => pull(),
        Operation::CreateNetwork => RuntimeError::Network(message.to_owned()),
        Operation::CreateContainer if missing_image(status, message) => pull(),
        Operation::CreateContainer | Operation::StartContainer
            if missing_network(status, message) =>
        {
            RuntimeError::Network(message.to_owned())
        }
        Operation::CreateContainer | Operation::StartContainer if is_rejection(&m) => {
            RuntimeError::CreateRejected(message.to_owned())
        }
        Operation::CreateContainer => RuntimeError::CreateRejected(message.to_owned()),
        Operation::InspectImage | Operation::StartContainer | Operation::Other if status == 404 => {
            RuntimeError::NotFound(message.to_owned())
        }
        Operation::InspectImage | Operation::StartContainer | Operation::Other => {
            RuntimeError::Other(message.to_owned())
        }
    }
}

/// Whether the daemon refused a create because the image is not on the host.
pub fn missing_image(status: u16, message: &str) -> bool {
    status == 404 && message.to_lowercase().contains("no such image")
}

/// Whether the daemon refused because a network the container is attached to is gone.
pub fn missing_network(status: u16, message: &str) -> bool {
    let m = message.to_lowercase();
    (status == 404 || status == 500) && m.contains("network") && m.contains("not found")
}

/// Messages of a start that fails because of how the container was set up.
fn is_rejection(m: &str) -> bool {
    [
        "port is already allocated",
        "address already in use",
        "invalid mount",
        "bind source path does not exist",
        "invalid reference format",
        "oci runtime create failed",
        "executable file not found",
        "no such file or directory",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// An error that never reached the daemon (socket missing, connection refused, timeout).
pub fn unreachable(message: &str) -> RuntimeError {
    RuntimeError::Unavailable(message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::status::DeploymentStatus as S;
    use Operation::*;

    #[test]
    fn docker_error_responses_classify_into_statuses() {
        // Messages as dockerd 20.10–28 writes them.
        let cases = [
            (Pull, 404, "pull access denied for nosuch/image, repository does not exist or may require 'docker login'", S::ImagePullBackOff),
            (Pull, 500, "Get \"https://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused", S::ImagePullBackOff),
            (Pull, 404, "manifest for busybox:9.99 not found: manifest unknown: manifest unknown", S::ImagePullBackOff),
            (InspectImage, 404, "No such image: busybox:1.36", S::ImagePullBackOff),
            (CreateContainer, 404, "No such image: keel-test/busybox:missing", S::ImagePullBackOff),
            (CreateContainer, 400, "invalid mount config for type \"bind\": bind source path does not exist: /srv/nope", S::CreateContainerError),
            (CreateContainer, 400, "invalid reference format", S::CreateContainerError),
            (CreateContainer, 409, "Conflict. The container name \"/keel-demo-web-1-0\" is already in use", S::CreateContainerError),
            (CreateContainer, 404, "network keel-demo not found", S::NetworkError),
            (StartContainer, 404, "network 5f0c2b1e9a7d not found", S::NetworkError),
            (StartContainer, 500, "driver failed programming external connectivity on endpoint keel-demo-web-1-0: Bind for 0.0.0.0:8080 failed: port is already allocated", S::CreateContainerError),
            (StartContainer, 500, "failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"nosuch\": executable file not found in $PATH: unknown", S::CreateContainerError),
            (StartContainer, 404, "No such container: abc", S::Error),
            (StartContainer, 500, "something unexpected", S::Error),
            (CreateNetwork, 500, "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network", S::NetworkError),
            (Other, 500, "unexpected", S::Error),
        ];
        for (op, status, message, expected) in cases {
            let error = classify(op, status, message, "img");
            assert_eq!(error.status(), expected, "{op:?} {status} {message}");
        }
        assert_eq!(unreachable("connection refused").status(), S::Error);
    }
}
