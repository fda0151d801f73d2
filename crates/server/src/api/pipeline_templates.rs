//! Reusable pipeline templates: publish (validated before it is stored;
//! versions immutable), list, show; and the lookup runs use to expand
//! `uses: <name>@<version>` jobs before planning.

use crate::auth::{Auth, Developer, Viewer};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use pave_model::pipeline_spec::PipelineSpec;
use pave_model::pipeline_template::{
    MAX_TEMPLATE_BYTES, PipelineTemplate, TemplateInput, expand_templates, parse_template,
    template_refs,
};
use pave_model::{SpecErrors, parse_pave_yaml};
use pave_store::{NewPipelineTemplate, PipelineTemplateRow, Published};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;

/// A published template version as lists show it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TemplateView {
    pub name: String,
    /// `MAJOR.MINOR.PATCH[-prerelease]`.
    pub version: String,
    pub description: Option<String>,
    /// `sha256:<hex>` of the document.
    pub digest: String,
    pub created_at: String,
    pub created_by: String,
}

impl From<PipelineTemplateRow> for TemplateView {
    fn from(r: PipelineTemplateRow) -> TemplateView {
        TemplateView {
            name: r.name,
            version: r.version,
            description: r.description,
            digest: r.digest,
            created_at: r.created_at,
            created_by: r.created_by,
        }
    }
}

/// One declared input.
#[derive(Serialize, utoipa::ToSchema)]
pub struct InputView {
    pub name: String,
    pub description: Option<String>,
    pub required: bool,
    /// The default value (a string, number or boolean), if any.
    #[schema(value_type = Option<Object>)]
    pub default: Option<serde_json::Value>,
}

/// One declared output: which template job output it is.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OutputView {
    pub name: String,
    pub job: String,
    pub output: String,
}

/// A published version with its document and what it declares.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TemplateDetail {
    #[serde(flatten)]
    pub template: TemplateView,
    pub inputs: Vec<InputView>,
    pub outputs: Vec<OutputView>,
    /// The template's job ids, in order.
    pub jobs: Vec<String>,
    /// The document as published.
    pub body: String,
}

/// The answer to a publish: the version, and whether this call created it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PublishView {
    #[serde(flatten)]
    pub template: TemplateView,
    /// False when this exact document was already published as this version.
    pub created: bool,
}

fn spec_errors(file: &str, SpecErrors(errors): SpecErrors) -> ApiError {
    let message = match errors.as_slice() {
        [one] => one.to_string(),
        [first, ..] => format!("{first} (and {} more)", errors.len() - 1),
        [] => format!("{file} is not a valid pipeline template"),
    };
    ApiError::invalid("invalid_spec", message).with_details(json!({ "errors": errors }))
}

/// Publish a pipeline template version.
///
/// The body is the template's YAML text. It is parsed and validated first
/// (422 with located errors in `details.errors`); then stored under
/// `name@version` from its `template:` header: 201 when new, 200 when this
/// exact document is already that version, 409 when that version holds a
/// different document (versions are immutable; publish a new one). Appends
/// `dev.pave.pipelinetemplate.published.0.1.0` when new.
#[utoipa::path(post, path = "/api/v1/pipeline-templates", tag = "pipeline-templates",
    security(("bearer" = [])),
    request_body(content = String, content_type = "application/yaml", description = "the template document"),
    responses((status = 201, description = "published", body = PublishView),
              (status = 200, description = "already published with identical content", body = PublishView),
              (status = 409, description = "this version holds other content", body = crate::error::ErrorBody),
              (status = 422, description = "the template is invalid", body = crate::error::ErrorBody)))]
pub async fn publish(
    auth: Auth<Developer>,
    State(state): State<AppState>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<PublishView>)> {
    if body.len() > MAX_TEMPLATE_BYTES {
        return Err(ApiError::invalid(
            "invalid_body",
            format!("a template may be at most {MAX_TEMPLATE_BYTES} bytes"),
        ));
    }
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::invalid("invalid_body", "the template is not UTF-8 text"))?;
    let (text, parsed) = tokio::task::spawn_blocking(move || {
        let parsed = parse_template("template.yaml", &text);
        (text, parsed)
    })
    .await
    .map_err(ApiError::internal)?;
    let template = parsed.map_err(|e| spec_errors("template.yaml", e))?;
    let new = NewPipelineTemplate {
        name: template.name.clone(),
        version: template.version.clone(),
        description: template.description.clone(),
        body: text,
    };
    let outcome = state
        .store
        .publish_pipeline_template(&new, &auth.principal.actor())
        .await?;
    Ok(match outcome {
        Published::Created(row) => (
            StatusCode::CREATED,
            Json(PublishView {
                template: row.into(),
                created: true,
            }),
        ),
        Published::Unchanged(row) => (
            StatusCode::OK,
            Json(PublishView {
                template: row.into(),
                created: false,
            }),
        ),
    })
}

/// List every published template version (by name, oldest version first).
#[utoipa::path(get, path = "/api/v1/pipeline-templates", tag = "pipeline-templates",
    security(("bearer" = [])),
    responses((status = 200, body = [TemplateView])))]
pub async fn list(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
) -> ApiResult<Json<Vec<TemplateView>>> {
    let rows = state.store.list_pipeline_templates().await?;
    Ok(Json(rows.into_iter().map(TemplateView::from).collect()))
}

/// Show one template version: its document, inputs, outputs and jobs.
#[utoipa::path(get, path = "/api/v1/pipeline-templates/{name}/{version}", tag = "pipeline-templates",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "template name"),
           ("version" = String, Path, description = "explicit version, e.g. 1.2.0")),
    responses((status = 200, body = TemplateDetail), (status = 404, body = crate::error::ErrorBody)))]
pub async fn show(
    _auth: Auth<Viewer>,
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<TemplateDetail>> {
    let Some((row, body)) = state.store.get_pipeline_template(&name, &version).await? else {
        return Err(ApiError::not_found(
            not_registered(&state, &name, &version).await?,
        ));
    };
    let file = format!("{name}@{version}");
    let parsed = parse_template(&file, &body)
        .map_err(|e| ApiError::internal(format!("stored template {file} no longer parses: {e}")))?;
    Ok(Json(TemplateDetail {
        template: row.into(),
        inputs: parsed
            .inputs
            .iter()
            .map(|(n, i): &(String, TemplateInput)| InputView {
                name: n.clone(),
                description: i.description.clone(),
                required: i.required,
                default: i.default.clone(),
            })
            .collect(),
        outputs: parsed
            .outputs
            .iter()
            .map(|(n, o)| OutputView {
                name: n.clone(),
                job: o.job.clone(),
                output: o.output.clone(),
            })
            .collect(),
        jobs: parsed.job_ids.clone(),
        body,
    }))
}

/// "no pipeline template `x@y` is registered on this server", with the
/// versions of `x` that are.
async fn not_registered(state: &AppState, name: &str, version: &str) -> ApiResult<String> {
    let versions: Vec<String> = state
        .store
        .list_pipeline_templates()
        .await?
        .into_iter()
        .filter(|r| r.name == name)
        .map(|r| r.version)
        .collect();
    let known = if versions.is_empty() {
        format!("no version of `{name}` is published")
    } else {
        format!("published versions of `{name}`: {}", versions.join(", "))
    };
    Ok(format!(
        "no pipeline template `{name}@{version}` is registered on this server ({known}); publish it with `pave pipeline-template publish -f FILE`"
    ))
}

/// The templates a `pave.yaml` uses, looked up before planning: each
/// `(name, version)` → the parsed template, or why there is none.
#[derive(Default)]
pub struct ResolvedTemplates(BTreeMap<(String, String), Result<PipelineTemplate, String>>);

impl ResolvedTemplates {
    /// Expands the pipeline's `uses:` jobs with the templates looked up.
    pub fn expand(
        &self,
        file: &str,
        text: &str,
        spec: &PipelineSpec,
    ) -> Result<PipelineSpec, SpecErrors> {
        expand_templates(file, text, spec, &mut |name, version| match self
            .0
            .get(&(name.to_string(), version.to_string()))
        {
            Some(found) => found.clone(),
            None => Err(format!(
                "pipeline template `{name}@{version}` was not looked up before planning"
            )),
        })
    }
}

/// Looks up every template `text` (a `pave.yaml`) uses. A file that does
/// not parse resolves to nothing: planning reports its errors.
pub(crate) async fn resolve_for(
    state: &AppState,
    file: &str,
    text: &str,
) -> ApiResult<ResolvedTemplates> {
    if !text.contains("uses") {
        // No job can use a template; spare the second parse.
        return Ok(ResolvedTemplates::default());
    }
    let (f, t) = (file.to_string(), text.to_string());
    let refs = tokio::task::spawn_blocking(move || {
        parse_pave_yaml(&f, &t)
            .ok()
            .and_then(|d| d.pipeline)
            .map(|p| template_refs(&p))
            .unwrap_or_default()
    })
    .await
    .map_err(ApiError::internal)?;
    let mut out = BTreeMap::new();
    for (name, version) in refs {
        let found = match state.store.get_pipeline_template(&name, &version).await? {
            None => Err(not_registered(state, &name, &version).await?),
            Some((_, body)) => parse_template(&format!("{name}@{version}"), &body)
                .map_err(|e| format!("the published template `{name}@{version}` is invalid: {e}")),
        };
        out.insert((name, version), found);
    }
    Ok(ResolvedTemplates(out))
}
