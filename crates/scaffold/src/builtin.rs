//! The golden paths shipped inside the binary (`templates/<name>/`,
//! embedded by `build.rs`).

use crate::template::{Template, TemplateFile, TemplateSource, TemplateSummary};

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// Names of the built-in templates, sorted.
pub fn builtin_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = FILES.iter().map(|f| f.0).collect();
    names.dedup();
    names
}

/// Loads the built-in template `name`, or the error if it is broken
/// (a test keeps every built-in loadable).
pub fn try_builtin(name: &str) -> Option<Result<Template, crate::ScaffoldError>> {
    let files: Vec<_> = FILES.iter().filter(|f| f.0 == name).collect();
    let manifest = files.iter().find(|f| f.1 == "template.yaml")?;
    let yaml = String::from_utf8_lossy(manifest.2);
    let skeleton = files
        .iter()
        .filter_map(|f| {
            f.1.strip_prefix("skeleton/").map(|p| TemplateFile {
                path: p.to_string(),
                contents: f.2.to_vec(),
                executable: f.3,
            })
        })
        .collect();
    Some(Template::from_parts(
        TemplateSource::Builtin(name.to_string()),
        &yaml,
        skeleton,
    ))
}

/// The built-in template `name`.
pub fn builtin(name: &str) -> Option<Template> {
    try_builtin(name).and_then(Result::ok)
}

/// Every built-in template's summary, sorted by name.
pub fn builtins() -> Vec<TemplateSummary> {
    builtin_names()
        .into_iter()
        .filter_map(builtin)
        .map(|t| t.summary())
        .collect()
}
