//! Templates end to end in the library: built-ins load, rendering is
//! deterministic, and bad templates, answers and destinations are refused
//! with located, named errors and nothing written.

use pave_scaffold::{
    Answers, RenderOptions, ScaffoldError, Template, TemplateLock, builtin, builtin_names,
    builtins, try_builtin,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pave-scaffold-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn answers(pairs: &[(&str, serde_json::Value)]) -> Answers {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Every file under `root` with its bytes and mode, sorted.
fn snapshot(root: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if p.is_dir() {
                out.insert(rel + "/", (Vec::new(), mode));
                stack.push(p);
            } else {
                out.insert(rel, (fs::read(&p).unwrap(), mode));
            }
        }
    }
    out
}

/// A template directory with `yaml` as template.yaml and `files` in skeleton/.
fn template_dir(dir: &Path, yaml: &str, files: &[(&str, &str)]) -> PathBuf {
    let t = dir.join("tpl");
    fs::create_dir_all(t.join("skeleton")).unwrap();
    fs::write(t.join("template.yaml"), yaml).unwrap();
    for (p, c) in files {
        let path = t.join("skeleton").join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, c).unwrap();
    }
    t
}

const SIMPLE: &str = "name: simple
title: Simple
description: A test template
version: 0.2.0
parameters:
  type: object
  required: [name]
  properties:
    name: { type: string, pattern: '^[a-z]+$', maxLength: 8 }
    replicas: { type: integer, minimum: 1, maximum: 5, default: 2 }
    flavour: { type: string, enum: [plain, fancy], default: plain }
    debug: { type: boolean, default: false }
";

#[test]
fn every_builtin_loads_and_is_listed() {
    assert!(builtin_names().contains(&"python-http"));
    for name in builtin_names() {
        let t = try_builtin(name).unwrap();
        assert!(t.is_ok(), "{name}: {}", t.err().unwrap());
    }
    let list = builtins();
    assert_eq!(list.len(), builtin_names().len());
    assert_eq!(list[0].source, format!("builtin:{}", list[0].name));
    assert!(builtin("no-such").is_none());
}

#[test]
fn rendering_is_deterministic_and_writes_the_lock() {
    let dir = scratch("determinism");
    let t = builtin("python-http").unwrap();
    let a = answers(&[("name", json!("hello")), ("owner", json!("platform"))]);
    let one = t
        .render(&a, &dir.join("one"), RenderOptions::default())
        .unwrap();
    t.render(&a, &dir.join("two"), RenderOptions::default())
        .unwrap();
    let (s1, s2) = (snapshot(&dir.join("one")), snapshot(&dir.join("two")));
    assert_eq!(s1, s2);
    assert!(s1.contains_key("pave.yaml") && s1.contains_key(".gitignore"));
    assert!(one.files.contains(&TemplateLock::PATH.to_string()));
    let lock = TemplateLock::read(&dir.join("one")).unwrap();
    assert_eq!(lock.template, "python-http");
    assert_eq!(lock.source, "builtin:python-http");
    assert_eq!(lock.answers["description"], json!("A Python HTTP service"));
    // The in-memory tree is the same bytes.
    let tree = t.render_tree(&a).unwrap();
    for f in &tree.files {
        assert_eq!(s1[&f.path].0, f.contents, "{}", f.path);
    }
    let pave = fs::read_to_string(dir.join("one/pave.yaml")).unwrap();
    assert!(pave.contains("name: hello") && pave.contains("owner: platform"));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn paths_are_templates_binary_files_are_copied_and_exec_bits_kept() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("paths");
    let t = template_dir(
        &dir,
        SIMPLE,
        &[("src/{{ name }}.txt", "{{ name }} x{{ replicas }}\n")],
    );
    let bin = t.join("skeleton/blob.bin");
    fs::write(&bin, [0xff, 0xfe, b'{', b'{', 0]).unwrap();
    let script = t.join("skeleton/run.sh");
    fs::write(&script, "echo {{ flavour }}\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o775)).unwrap();
    let t = Template::load_dir(&t).unwrap();
    let out = dir.join("out");
    t.render(
        &answers(&[("name", json!("abc"))]),
        &out,
        RenderOptions::default(),
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(out.join("src/abc.txt")).unwrap(),
        "abc x2\n"
    );
    assert_eq!(
        fs::read(out.join("blob.bin")).unwrap(),
        vec![0xff, 0xfe, b'{', b'{', 0]
    );
    assert_eq!(
        fs::read_to_string(out.join("run.sh")).unwrap(),
        "echo plain\n"
    );
    let mode = |p: &str| fs::metadata(out.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        (mode("run.sh"), mode("blob.bin"), mode("src")),
        (0o755, 0o644, 0o755)
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn an_undefined_variable_is_refused_with_file_and_line_and_nothing_written() {
    let dir = scratch("undefined");
    let t = template_dir(&dir, SIMPLE, &[("a.txt", "ok\nline two {{ nme }}\n")]);
    let t = Template::load_dir(&t).unwrap();
    let out = dir.join("out");
    let err = t
        .render(
            &answers(&[("name", json!("abc"))]),
            &out,
            RenderOptions::default(),
        )
        .unwrap_err();
    let ScaffoldError::Render(loc) = &err else {
        panic!("{err}")
    };
    assert!(loc.file.ends_with("skeleton/a.txt"), "{}", loc.file);
    assert_eq!(loc.line, 2);
    assert!(loc.message.contains("undefined"), "{}", loc.message);
    assert!(!out.exists());
    assert_eq!(
        fs::read_dir(&dir).unwrap().count(),
        1,
        "only the template dir is left"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_syntax_error_is_refused_with_file_and_line() {
    let dir = scratch("syntax");
    let t = template_dir(
        &dir,
        SIMPLE,
        &[("a.txt", "one\ntwo\n{% if name %}never closed\n")],
    );
    let t = Template::load_dir(&t).unwrap();
    let err = t
        .render_tree(&answers(&[("name", json!("abc"))]))
        .unwrap_err();
    let ScaffoldError::Render(loc) = &err else {
        panic!("{err}")
    };
    assert!(
        loc.file.ends_with("skeleton/a.txt") && loc.line >= 3,
        "{loc}"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_template_yaml_is_refused_with_file_line_and_column() {
    let dir = scratch("manifest");
    let bad = SIMPLE
        .replace("title: Simple", "titel: Simple")
        .replace("version: 0.2.0", "version: 1.2");
    let t = template_dir(&dir, &bad, &[]);
    let err = Template::load_dir(&t).unwrap_err();
    let ScaffoldError::Manifest(errs) = &err else {
        panic!("{err}")
    };
    let text = err.to_string();
    assert!(
        errs.iter().all(|e| e.file.ends_with("template.yaml")),
        "{text}"
    );
    let unknown = errs
        .iter()
        .find(|e| e.message.contains("titel"))
        .expect(&text);
    assert_eq!((unknown.line, unknown.column), (2, 1));
    assert!(unknown.message.contains("did you mean `title`"), "{text}");
    let version = errs
        .iter()
        .find(|e| e.message.contains("MAJOR.MINOR.PATCH"))
        .expect(&text);
    assert_eq!(version.line, 4);
    // Malformed YAML and a default that breaks its own rule.
    fs::write(t.join("template.yaml"), "name: [unclosed\n").unwrap();
    let err = Template::load_dir(&t).unwrap_err();
    assert!(
        matches!(&err, ScaffoldError::Manifest(e) if e[0].line >= 1),
        "{err}"
    );
    fs::write(
        t.join("template.yaml"),
        SIMPLE.replace("default: 2", "default: 9"),
    )
    .unwrap();
    let err = Template::load_dir(&t).unwrap_err().to_string();
    assert!(
        err.contains("template.yaml:10:") && err.contains("maximum"),
        "{err}"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn parameter_errors_name_the_parameter_and_the_rule() {
    let dir = scratch("params");
    let t = Template::load_dir(&template_dir(&dir, SIMPLE, &[])).unwrap();
    let rules = |a: Answers| -> Vec<(String, &'static str)> {
        match t.validate_answers(&a) {
            Err(ScaffoldError::Params(errs)) => {
                errs.into_iter().map(|e| (e.parameter, e.rule)).collect()
            }
            other => panic!("{other:?}"),
        }
    };
    let p = |s: &str| s.to_string();
    assert_eq!(rules(answers(&[])), vec![(p("name"), "required")]);
    assert_eq!(
        rules(answers(&[("name", json!("ABC"))])),
        vec![(p("name"), "pattern")]
    );
    assert_eq!(
        rules(answers(&[("name", json!("abcdefghij"))])),
        vec![(p("name"), "maxLength")]
    );
    assert_eq!(
        rules(answers(&[
            ("name", json!("a")),
            ("replicas", json!(9)),
            ("flavour", json!("odd")),
            ("nam", json!(1))
        ])),
        vec![
            (p("nam"), "unknown"),
            (p("replicas"), "maximum"),
            (p("flavour"), "enum")
        ]
    );
    assert_eq!(
        rules(answers(&[("name", json!(3))])),
        vec![(p("name"), "type")]
    );
    // `k=v` strings are coerced by type; a bad one names parameter and rule.
    let a = t
        .parse_params(&[p("name=abc"), p("replicas=3"), p("debug=true")])
        .unwrap();
    assert_eq!((&a["replicas"], &a["debug"]), (&json!(3), &json!(true)));
    let filled = t.validate_answers(&a).unwrap();
    assert_eq!(filled["flavour"], json!("plain"));
    let err = t
        .parse_params(&[p("replicas=many"), p("flavor=x")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`replicas` (type)") && err.contains("did you mean `flavour`"),
        "{err}"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_non_empty_destination_is_refused_unless_forced() {
    let dir = scratch("nonempty");
    let t = Template::load_dir(&template_dir(&dir, SIMPLE, &[("a.txt", "{{ name }}\n")])).unwrap();
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("keep.txt"), "mine").unwrap();
    let a = answers(&[("name", json!("abc"))]);
    let err = t.render(&a, &out, RenderOptions::default()).unwrap_err();
    assert!(
        matches!(err, ScaffoldError::DestinationNotEmpty(_)),
        "{err}"
    );
    assert_eq!(fs::read_dir(&out).unwrap().count(), 1, "nothing written");
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 2, "no temp dir left");
    t.render(&a, &out, RenderOptions { force: true }).unwrap();
    assert_eq!(fs::read_to_string(out.join("a.txt")).unwrap(), "abc\n");
    assert_eq!(fs::read_to_string(out.join("keep.txt")).unwrap(), "mine");
    // An empty directory is fine without force.
    let empty = dir.join("empty");
    fs::create_dir_all(&empty).unwrap();
    t.render(&a, &empty, RenderOptions::default()).unwrap();
    assert!(empty.join(".pave/template.lock").is_file());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn python_http_renders_a_service_whose_pave_yaml_parses_and_whose_tests_pass() {
    let dir = scratch("python-http");
    let t = builtin("python-http").unwrap();
    let a = answers(&[
        ("name", json!("hello")),
        ("owner", json!("platform")),
        ("description", json!("Says: \"hi\"")),
    ]);
    let out = dir.join("hello");
    t.render(&a, &out, RenderOptions::default()).unwrap();
    let text = fs::read_to_string(out.join("pave.yaml")).unwrap();
    let doc = pave_model::parse_pave_yaml("pave.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(doc.service.entity.metadata.name, "hello");
    assert!(doc.pipeline.is_some() && doc.deploy.is_some(), "{text}");
    let ran = std::process::Command::new("python3")
        .arg("run_tests.py")
        .current_dir(&out)
        .output()
        .expect("python3");
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let junit = fs::read_to_string(out.join("reports/junit.xml")).unwrap();
    assert!(
        junit.contains("tests=\"4\" failures=\"0\" errors=\"0\""),
        "{junit}"
    );
    let _ = fs::remove_dir_all(&dir);
}
