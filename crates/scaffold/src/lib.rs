//! Golden paths: service templates, their parameters, and deterministic
//! rendering into a new repository. Pure library (no server, no CLI);
//! `pave new`, upgrades and the portal build on it.
//!
//! A template is a directory with `template.yaml` (see [`manifest`]) and a
//! `skeleton/` whose file paths and UTF-8 contents are Jinja templates
//! (minijinja; an undefined variable is an error naming file and line).
//!
//! ```no_run
//! use pave_scaffold::{RenderOptions, Template, builtin};
//! # fn main() -> Result<(), pave_scaffold::ScaffoldError> {
//! let t = builtin("python-http").expect("built in");
//! let mut answers = t.parse_params(&["name=hello".into(), "owner=platform".into()])?;
//! answers = t.validate_answers(&answers)?; // defaults filled in
//! let report = t.render(&answers, std::path::Path::new("hello"), RenderOptions::default())?;
//! println!("{} files, lock {}", report.files.len(), report.lock.version);
//! # Ok(()) }
//! ```
//!
//! API at a glance:
//! - [`Template::load_dir`], [`builtin`], [`builtins`], [`builtin_names`]: get templates.
//! - [`Template::parse_params`] (`k=v` strings, coerced by type),
//!   [`Template::validate_answers`] (schema check, defaults): answers.
//! - [`Template::render_tree`] (in memory, for upgrades and previews),
//!   [`Template::render`] (to disk, atomic, with `.pave/template.lock`).
//! - [`TemplateLock`]: read/write the lock file.
//!
//! Determinism: the same template version and answers give a byte-identical
//! tree (sorted, no timestamps, modes 0644/0755 from the exec bit only).

mod builtin;
mod error;
mod lock;
pub mod manifest;
pub mod params;
mod render;
mod template;

pub use builtin::{builtin, builtin_names, builtins, try_builtin};
pub use error::{Located, ParamError, ScaffoldError};
pub use lock::TemplateLock;
pub use manifest::{Manifest, ParamType, Parameter, Version};
pub use params::Answers;
pub use render::{RenderOptions, RenderReport, RenderedTree};
pub use template::{Template, TemplateFile, TemplateSource, TemplateSummary};
