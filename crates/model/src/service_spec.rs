//! `pave.yaml`: a service's identity (and, in later issues, its pipeline and deploy sections).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The whole `pave.yaml` document. Unknown top-level keys are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaveSpec {
    pub service: ServiceSpec,
    /// Pipeline section (GitHub Actions shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<crate::pipeline_spec::PipelineSpec>,
    /// Deploy section; typed by the deployments issue. Kept raw for now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Value>,
}

/// The `service:` section of `pave.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    /// Owner team (a Group reference: `payments` or `group:default/payments`).
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// `experimental`, `production`, `deprecated` (free text, like Backstage). Default `production`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<String>,
    /// Component type; default `service`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub component_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<crate::entity::Link>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, rename = "dependsOn", skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    #[serde(
        default,
        rename = "providesApis",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub provides_apis: Vec<String>,
    #[serde(
        default,
        rename = "consumesApis",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub consumes_apis: Vec<String>,
}
