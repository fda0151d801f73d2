//! `pave templates` and `pave template show`: the golden paths on offer.

use crate::output;
use anyhow::{Result, bail};
use pave_scaffold::{Template, builtin, builtin_names, builtins};
use serde_json::{Value, json};
use std::path::Path;
use std::process::ExitCode;

/// `pave template ...`.
#[derive(clap::Subcommand)]
pub enum TemplateCommand {
    /// Show a template's parameters (a built-in name or a template directory).
    Show {
        /// Template name or directory.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// A built-in template by name, else a template directory.
pub fn load_template(name_or_dir: &str) -> Result<Template> {
    if let Some(t) = builtin(name_or_dir) {
        return Ok(t);
    }
    let path = Path::new(name_or_dir);
    if path.join("template.yaml").is_file() {
        return Ok(Template::load_dir(path)?);
    }
    bail!(
        "no template `{name_or_dir}`: not a built-in ({}) and not a directory with template.yaml",
        builtin_names().join(", ")
    )
}

/// `pave templates`: the built-in templates and their versions.
pub fn list(json: bool) -> Result<ExitCode> {
    let all = builtins();
    if json {
        output::json(&all)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|t| vec![t.name.clone(), t.version.to_string(), t.title.clone()])
        .collect();
    output::table(&["NAME", "VERSION", "TITLE"], &rows);
    println!("\nCreate a service: pave new <template> <name> --owner TEAM");
    Ok(ExitCode::SUCCESS)
}

/// `pave template ...`.
pub fn run(cmd: TemplateCommand) -> Result<ExitCode> {
    match cmd {
        TemplateCommand::Show { name, json } => show(&name, json),
    }
}

fn show(name: &str, as_json: bool) -> Result<ExitCode> {
    let t = load_template(name)?;
    let m = &t.manifest;
    if as_json {
        output::json(&json!({
            "name": m.name,
            "title": m.title,
            "description": m.description,
            "version": m.version,
            "source": t.source.to_string(),
            "parameters": m.parameters,
            "post-create": m.post_create,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} {} ({})", m.name, m.version, t.source);
    println!("{}", m.title);
    println!("{}\n", m.description);
    let rows: Vec<Vec<String>> = m
        .parameters
        .iter()
        .map(|p| {
            let mut rules = Vec::new();
            if let Some(e) = &p.allowed {
                rules.push(format!(
                    "one of {}",
                    e.iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if let Some(pat) = &p.pattern {
                rules.push(format!("pattern {pat}"));
            }
            vec![
                p.name.clone(),
                p.ty.as_str().to_string(),
                if p.required {
                    "yes".into()
                } else {
                    "no".into()
                },
                p.default
                    .as_ref()
                    .map(Value::to_string)
                    .unwrap_or_else(|| "-".into()),
                [p.description.clone().unwrap_or_default(), rules.join("; ")]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" — "),
            ]
        })
        .collect();
    output::table(
        &["PARAMETER", "TYPE", "REQUIRED", "DEFAULT", "DESCRIPTION"],
        &rows,
    );
    if !m.post_create.is_empty() {
        println!("\npost-create: {}", m.post_create.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}
