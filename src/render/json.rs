//! Machine-readable output: one JSON object per host, and the `--out-dir` files.

use std::path::Path;

use fleet_remote_exec::ExitStatus;
use serde_json::{Value, json};

use super::{HostReport, Outcome};

/// One host's result as a JSON object.
pub(crate) fn host_line(r: &HostReport) -> Value {
    let mut v = json!({
        "host": r.name,
        "endpoint": r.endpoint,
        "status": r.outcome.status().as_str(),
        "exit_code": null,
        "signal": null,
        "stdout": "",
        "stderr": "",
        "stdout_dropped": 0,
        "stderr_dropped": 0,
        "killed": null,
        "error": null,
        "error_kind": null,
        "connect_ms": r.connect.map(|d| d.as_millis() as u64),
        "exec_ms": null,
        "duration_ms": r.total.as_millis() as u64,
    });
    match &r.outcome {
        Outcome::Done(out) => {
            v["exit_code"] = json!(out.status.code());
            v["stdout"] = json!(out.stdout.to_string_lossy());
            v["stderr"] = json!(out.stderr.to_string_lossy());
            v["stdout_dropped"] = json!(out.stdout.dropped());
            v["stderr_dropped"] = json!(out.stderr.dropped());
            v["exec_ms"] = json!(out.duration.as_millis() as u64);
            match &out.status {
                ExitStatus::Signal { name, .. } => v["signal"] = json!(name),
                ExitStatus::TimedOut { killed } | ExitStatus::Cancelled { killed } => {
                    v["killed"] = json!(killed);
                }
                _ => {}
            }
        }
        Outcome::Unreachable(e) | Outcome::Lost(e) => {
            v["error"] = json!(super::error_chain(e));
            v["error_kind"] = json!(e.kind());
        }
        other => v["error"] = json!(other.reason()),
    }
    v
}

/// Writes `DIR/<host>.stdout`, `DIR/<host>.stderr` and `DIR/summary.json` (every host's
/// object without the streams).
pub(crate) fn write_out_dir(dir: &Path, reports: &[HostReport]) -> std::io::Result<()> {
    let mut summary = Vec::with_capacity(reports.len());
    for r in reports {
        let (stdout, stderr) = match &r.outcome {
            Outcome::Done(out) => (out.stdout.to_bytes(), out.stderr.to_bytes()),
            _ => (Vec::new(), Vec::new()),
        };
        std::fs::write(dir.join(format!("{}.stdout", r.name)), stdout)?;
        std::fs::write(dir.join(format!("{}.stderr", r.name)), stderr)?;
        let mut line = host_line(r);
        if let Some(obj) = line.as_object_mut() {
            obj.remove("stdout");
            obj.remove("stderr");
        }
        summary.push(line);
    }
    let text = serde_json::to_string_pretty(&summary).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("summary.json"), text + "\n")
}

/// Converts an inventory var to JSON (datetimes become strings).
pub(crate) fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => json!(s),
        toml::Value::Integer(i) => json!(i),
        toml::Value::Float(f) => json!(f),
        toml::Value::Boolean(b) => json!(b),
        toml::Value::Datetime(d) => json!(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}
