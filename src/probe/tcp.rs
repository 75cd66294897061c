//! TCP probe: healthy when a connection to the instance's port opens.

use crate::model::manifest::HealthCheck;
use crate::model::observed::ObservedInstance;
use crate::runtime::Runtime;

pub async fn probe(
    check: &HealthCheck,
    runtime: &dyn Runtime,
    instance: &ObservedInstance,
) -> Result<String, String> {
    let port = check.port.ok_or("tcp check without a port")?;
    let addr = super::endpoint(runtime, instance, port)?;
    tokio::net::TcpStream::connect(addr)
        .await
        .map(|_| format!("connected to {addr}"))
        .map_err(|e| format!("connect to {addr}: {e}"))
}
