//! Command probe: runs the check's command inside the instance; exit code 0 is healthy.

use crate::model::manifest::{HealthCheck, ProbeCommand};
use crate::model::observed::ObservedInstance;
use crate::runtime::Runtime;

pub async fn probe(
    check: &HealthCheck,
    runtime: &dyn Runtime,
    instance: &ObservedInstance,
) -> Result<String, String> {
    let command = match check
        .command
        .as_ref()
        .ok_or("command check without a command")?
    {
        ProbeCommand::Shell(line) => vec!["sh".to_owned(), "-c".to_owned(), line.clone()],
        ProbeCommand::Args(args) => args.clone(),
    };
    let output = runtime
        .exec(&instance.runtime_id, &command, check.timeout)
        .await
        .map_err(|e| format!("exec failed: {e}"))?;
    let tail: String = output.output.chars().take(200).collect();
    match output.exit_code {
        0 => Ok(format!("exit code 0 {tail}").trim_end().to_owned()),
        code => Err(format!("exit code {code} {tail}").trim_end().to_owned()),
    }
}
