//! Pure domain types and spec parsing for Pave: `pave.yaml`, Backstage
//! `catalog-info.yaml`, entity references. No I/O lives here.

mod deploy_parse;
pub mod deploy_spec;
pub mod entity;
pub mod error;
mod fast_yaml;
mod node;
mod node_de;
pub mod par;
pub mod parse;
pub mod pipeline_expr;
pub mod pipeline_spec;
pub mod pipeline_template;
pub mod reference;
pub mod service_spec;
pub mod suggest;
pub mod units;

pub use deploy_spec::{DeploySpec, Strategy};
pub use entity::{Entity, Kind, Link, Metadata};
pub use error::{SpecError, SpecErrors};
/// Located YAML: a document tree whose nodes and keys carry 1-based line/column.
pub use node::{Entry, Node, NodeKind, Pos, YamlError, parse_documents as parse_yaml_documents};
pub use parse::{
    ParsedEntity, PaveDocument, RefField, parse_file, parse_pave_yaml, reference_fields,
};
pub use pipeline_spec::{JobSpec, PipelineSpec, StepSpec};
pub use reference::{EntityRef, RefError};
pub use service_spec::{PaveSpec, ServiceSpec};

/// Backstage's name rule: 1–63 characters, `[a-zA-Z0-9]` runs joined by one of `-_.`.
/// Returns the rule text on failure.
pub fn entity_name_rule(s: &str) -> Result<(), &'static str> {
    const RULE: &str = "1-63 characters of [a-zA-Z0-9] separated by single '-', '_' or '.'";
    if s.is_empty() || s.len() > 63 {
        return Err(RULE);
    }
    let bytes = s.as_bytes();
    let sep = |b: u8| matches!(b, b'-' | b'_' | b'.');
    if sep(bytes[0]) || sep(bytes[bytes.len() - 1]) {
        return Err(RULE);
    }
    let mut prev_sep = false;
    for &b in bytes {
        if sep(b) {
            if prev_sep {
                return Err(RULE);
            }
            prev_sep = true;
        } else if b.is_ascii_alphanumeric() {
            prev_sep = false;
        } else {
            return Err(RULE);
        }
    }
    Ok(())
}
