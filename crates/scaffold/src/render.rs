//! Deterministic rendering: skeleton paths and UTF-8 contents are Jinja
//! templates (minijinja, strict undefined: an unknown variable is an error);
//! non-UTF-8 files are copied as they are. Output is sorted, carries no
//! timestamps, and fixes modes to 0644/0755 (only the exec bit is kept).

use crate::error::{Located, ScaffoldError};
use crate::lock::TemplateLock;
use crate::params::Answers;
use crate::template::{Template, TemplateFile};
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value as JValue};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// How to write a rendered tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Render into a destination that is not empty (files are overwritten;
    /// other files are left alone).
    pub force: bool,
}

/// What [`Template::render`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderReport {
    /// The destination directory.
    pub dest: PathBuf,
    /// Files written, relative to `dest`, sorted (the lock file included).
    pub files: Vec<String>,
    /// The lock written to `.pave/template.lock`.
    pub lock: TemplateLock,
}

/// A rendered tree in memory, sorted by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedTree {
    /// The files.
    pub files: Vec<TemplateFile>,
}

impl Template {
    /// Renders the skeleton in memory with `answers` (validated first,
    /// defaults filled in). A path component that renders empty drops the
    /// file (for optional files). Base for upgrades: render two versions
    /// and compare.
    pub fn render_tree(&self, answers: &Answers) -> Result<RenderedTree, ScaffoldError> {
        let answers = self.validate_answers(answers)?;
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .map_err(|e| render_error("(syntax)", &e))?;
        env.set_syntax(syntax);
        env.add_filter("tojson", tojson);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        let ctx = context(&answers);
        let mut out: BTreeMap<String, TemplateFile> = BTreeMap::new();
        for file in self.skeleton() {
            let label = Template::label(&self.source, &format!("skeleton/{}", file.path));
            let rendered_path = render_str(&env, &format!("{label} (path)"), &file.path, &ctx)?;
            let Some(path) = clean_path(&rendered_path).map_err(|m| {
                ScaffoldError::Render(Located {
                    file: label.clone(),
                    line: 0,
                    column: 0,
                    message: format!("path renders to `{rendered_path}`: {m}"),
                })
            })?
            else {
                continue;
            };
            let contents = match std::str::from_utf8(&file.contents) {
                Ok(text) => render_str(&env, &label, text, &ctx)?.into_bytes(),
                Err(_) => file.contents.clone(),
            };
            if out.contains_key(&path) {
                return Err(ScaffoldError::Render(Located {
                    file: label,
                    line: 0,
                    column: 0,
                    message: format!(
                        "renders to `{path}`, which another skeleton file also renders to"
                    ),
                }));
            }
            out.insert(
                path.clone(),
                TemplateFile {
                    path,
                    contents,
                    executable: file.executable,
                },
            );
        }
        Ok(RenderedTree {
            files: out.into_values().collect(),
        })
    }

    /// Renders into `dest` and writes `.pave/template.lock` there.
    ///
    /// Refuses a non-empty `dest` unless `options.force`. Without force the
    /// tree is written into a temporary directory beside `dest` and renamed
    /// into place, so a failure leaves nothing behind; everything that can
    /// be refused (answers, template errors) is refused before any write.
    pub fn render(
        &self,
        answers: &Answers,
        dest: &Path,
        options: RenderOptions,
    ) -> Result<RenderReport, ScaffoldError> {
        let answers = self.validate_answers(answers)?;
        let mut tree = self.render_tree(&answers)?;
        let lock = self.lock(&answers);
        tree.files.retain(|f| f.path != TemplateLock::PATH);
        tree.files.push(TemplateFile {
            path: TemplateLock::PATH.to_string(),
            contents: lock.to_json().into_bytes(),
            executable: false,
        });
        tree.files.sort_by(|a, b| a.path.cmp(&b.path));
        let empty = match fs::read_dir(dest) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(ScaffoldError::io(dest, e)),
        };
        if !empty && !options.force {
            return Err(ScaffoldError::DestinationNotEmpty(dest.to_path_buf()));
        }
        if empty {
            write_atomically(&tree, dest)?;
        } else {
            write_tree(&tree, dest)?;
        }
        Ok(RenderReport {
            dest: dest.to_path_buf(),
            files: tree.files.iter().map(|f| f.path.clone()).collect(),
            lock,
        })
    }
}

/// The template context: the answers as top-level variables.
fn context(answers: &Answers) -> JValue {
    let map: BTreeMap<String, JValue> = answers
        .iter()
        .map(|(k, v)| (k.clone(), json_to_jinja(v)))
        .collect();
    JValue::from_object(map)
}

fn json_to_jinja(v: &serde_json::Value) -> JValue {
    use serde_json::Value as J;
    match v {
        J::Null => JValue::from(()),
        J::Bool(b) => JValue::from(*b),
        J::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => JValue::from(i),
            (None, Some(f)) => JValue::from(f),
            _ => JValue::from(n.to_string()),
        },
        J::String(s) => JValue::from(s.as_str()),
        J::Array(items) => JValue::from(items.iter().map(json_to_jinja).collect::<Vec<_>>()),
        J::Object(m) => JValue::from_object(
            m.iter()
                .map(|(k, v)| (k.clone(), json_to_jinja(v)))
                .collect::<BTreeMap<String, JValue>>(),
        ),
    }
}

fn render_str(
    env: &Environment<'_>,
    name: &str,
    source: &str,
    ctx: &JValue,
) -> Result<String, ScaffoldError> {
    env.render_named_str(name, source, ctx)
        .map_err(|e| render_error(name, &e))
}

fn render_error(name: &str, e: &minijinja::Error) -> ScaffoldError {
    let mut message = e.kind().to_string();
    if let Some(detail) = e.detail() {
        message.push_str(": ");
        message.push_str(detail);
    }
    ScaffoldError::Render(Located {
        file: name.to_string(),
        line: e.line().unwrap_or(0),
        column: 0,
        message,
    })
}

/// `tojson`: a value as JSON (strings quoted and escaped), which is also a
/// valid YAML scalar.
fn tojson(v: JValue) -> String {
    match v.as_str() {
        Some(s) => serde_json::Value::String(s.to_string()).to_string(),
        None if v.is_undefined() || v.is_none() => "null".to_string(),
        None => v.to_string(),
    }
}

/// `Ok(None)` when a component is empty (the file is dropped); an error for
/// absolute paths and `.`/`..` components.
fn clean_path(p: &str) -> Result<Option<String>, &'static str> {
    if p.starts_with('/') || p.contains('\\') {
        return Err("an output path must be relative and use `/`");
    }
    let parts: Vec<&str> = p.split('/').collect();
    if parts.iter().any(|c| c.is_empty()) {
        return Ok(None);
    }
    if parts.iter().any(|c| *c == "." || *c == "..") {
        return Err("`.` and `..` are not allowed in output paths");
    }
    Ok(Some(parts.join("/")))
}

/// Writes into a fresh directory beside `dest`, then renames it into place.
fn write_atomically(tree: &RenderedTree, dest: &Path) -> Result<(), ScaffoldError> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| ScaffoldError::io(&parent, e))?;
    let base = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = parent.join(format!(".{base}.pave-new-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let result = (|| {
        fs::create_dir(&tmp).map_err(|e| ScaffoldError::io(&tmp, e))?;
        write_tree(tree, &tmp)?;
        set_dir_modes(&tmp)?;
        if dest.exists() {
            fs::remove_dir(dest).map_err(|e| ScaffoldError::io(dest, e))?;
        }
        fs::rename(&tmp, dest).map_err(|e| ScaffoldError::io(dest, e))
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

/// Writes every file under `root` with fixed modes.
fn write_tree(tree: &RenderedTree, root: &Path) -> Result<(), ScaffoldError> {
    for f in &tree.files {
        let path = root.join(&f.path);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| ScaffoldError::io(dir, e))?;
        }
        fs::write(&path, &f.contents).map_err(|e| ScaffoldError::io(&path, e))?;
        set_mode(&path, if f.executable { 0o755 } else { 0o644 })?;
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), ScaffoldError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| ScaffoldError::io(path, e))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> Result<(), ScaffoldError> {
    Ok(())
}

fn set_dir_modes(dir: &Path) -> Result<(), ScaffoldError> {
    set_mode(dir, 0o755)?;
    for entry in fs::read_dir(dir).map_err(|e| ScaffoldError::io(dir, e))? {
        let entry = entry.map_err(|e| ScaffoldError::io(dir, e))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            set_dir_modes(&entry.path())?;
        }
    }
    Ok(())
}
