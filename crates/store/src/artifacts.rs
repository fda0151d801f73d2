//! `artifact.packaged` events for the artifacts a job reports.
//!
//! The store keeps no artifact table: a job's artifacts are part of its
//! stored report (`result.artifacts[]`: `name`, `digest`, `size`, ...), and
//! the blobs live in the server's content-addressed artifact store. When a
//! job completes, one CDEvents `artifact.packaged` event per well-formed
//! artifact is appended in the same transaction as `taskrun.finished`.

use serde_json::{Value, json};

use crate::{JobRow, NewEvent, RunRow};

const PACKAGED: &str = "dev.cdevents.artifact.packaged.0.2.0";

/// One event per artifact of the job's report with a string name and a
/// `sha256:<64 lowercase hex>` digest; anything else is left out.
pub(crate) fn packaged_events(run: &RunRow, job: &JobRow, actor: &str) -> Vec<NewEvent> {
    let Some(list) = job.result.get("artifacts").and_then(Value::as_array) else {
        return Vec::new();
    };
    let service = run
        .service_key
        .rsplit('/')
        .next()
        .unwrap_or(&run.service_key);
    list.iter()
        .filter_map(|a| {
            let name = a.get("name")?.as_str()?;
            let digest = a.get("digest")?.as_str()?;
            let hex = digest.strip_prefix("sha256:")?;
            let well_formed = hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if name.is_empty() || !well_formed {
                return None;
            }
            Some(NewEvent {
                event_type: PACKAGED.to_string(),
                subject: format!(
                    "pkg:generic/{}/{}@{digest}",
                    purl_segment(service),
                    purl_segment(name)
                ),
                actor: actor.to_string(),
                payload: json!({
                    "run_id": run.id,
                    "job_id": job.id,
                    "job": job.key,
                    "service": run.service_key,
                    "name": name,
                    "digest": digest,
                    "size": a.get("size").and_then(Value::as_u64),
                    "media_type": a.get("media_type").and_then(Value::as_str),
                }),
            })
        })
        .collect()
}

/// Percent-encodes everything but unreserved characters (purl segments).
fn purl_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::purl_segment;

    #[test]
    fn purl_segments_are_encoded() {
        assert_eq!(purl_segment("app-1.0_x~"), "app-1.0_x~");
        assert_eq!(purl_segment("my app/x"), "my%20app%2Fx");
    }
}
