//! `parse_file` runs on anything a client sends: it must never panic, and
//! every error it returns must be located in the file it was given.

use pave_model::parse_file;
use proptest::prelude::*;

const VALID_CATALOG: &str = "\
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: svc
  tags: [a, b]
  links:
    - url: https://x.example
spec:
  type: service
  lifecycle: production
  owner: team-a
  dependsOn: [resource:db, 'component:x']
---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: g}
spec: {type: team, children: []}
";

const VALID_PAVE: &str = "\
service:
  name: hello
  owner: payments
  dependsOn: [db]
  links:
    - url: https://x.example
pipeline:
  jobs:
    test: { steps: [ { run: make test } ] }
";

fn check(file: &str, content: &str) {
    match parse_file(file, content) {
        Ok(entities) => {
            for e in entities {
                assert_eq!(e.file, file);
            }
        }
        Err(errs) => {
            assert!(!errs.0.is_empty());
            for e in errs.0 {
                assert_eq!(e.file, file);
                assert!(!e.message.is_empty());
            }
        }
    }
}

fn yamlish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(
                &[
                    "\n",
                    " ",
                    "  ",
                    "- ",
                    ": ",
                    "---\n",
                    "...\n",
                    "[",
                    "]",
                    "{",
                    "}",
                    ",",
                    "#",
                    "&a ",
                    "*a ",
                    "!t ",
                    "|\n",
                    ">-\n",
                    "'",
                    "\"",
                    "\\",
                    "?",
                    "<<: ",
                    "\t",
                    "\r",
                    "~",
                    "null",
                    "true",
                    "1e9",
                    "0x",
                    ".nan",
                    "apiVersion: backstage.io/v1alpha1\n",
                    "kind: Component\n",
                    "metadata:\n",
                    "  name: x\n",
                    "spec:\n",
                    "  owner: ",
                    "service:\n",
                    "  ownr: a\n",
                    "é",
                    "\u{feff}",
                    "\u{85}",
                    "\0",
                ][..]
            )
            .prop_map(str::to_string),
            "[a-z]{1,6}",
            any::<char>().prop_map(String::from),
        ],
        0..60,
    )
    .prop_map(|parts| parts.concat())
}

fn garble(base: &str, edits: &[(prop::sample::Index, String)]) -> String {
    let mut text = base.to_string();
    for (at, ins) in edits {
        let mut cut = at.index(text.len() + 1);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let end = text[cut..]
            .chars()
            .next()
            .map_or(cut, |c| cut + c.len_utf8());
        text.replace_range(cut..end, ins);
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(s in any::<String>()) {
        check("catalog-info.yaml", &s);
        check("pave.yaml", &s);
    }

    #[test]
    fn yaml_like_text_never_panics(s in yamlish()) {
        check("catalog-info.yaml", &s);
        check("svc/pave.yaml", &s);
    }

    #[test]
    fn garbled_files_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), "[-:#\\[\\]{}'\" \n\ta&*!|>]{0,3}"), 1..6)
    ) {
        check("catalog-info.yaml", &garble(VALID_CATALOG, &edits));
        check("pave.yaml", &garble(VALID_PAVE, &edits));
    }
}

#[test]
fn hostile_inputs_are_errors_not_crashes() {
    let deep_flow = "a: ".to_string() + &"[".repeat(100_000);
    let deep_block: String = (0..5000)
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect();
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    let many_docs = "---\n".repeat(50_000);
    let long_line = "a: ".to_string() + &"x".repeat(1_000_000);
    for (i, content) in [
        deep_flow.as_str(),
        &deep_block,
        bomb,
        &many_docs,
        &long_line,
        "\u{feff}a: 1",
        "*x",
        "!!binary AAA",
        "? [a]\n: b",
    ]
    .iter()
    .enumerate()
    {
        eprintln!("hostile input {i}");
        check("catalog-info.yaml", content);
        check("pave.yaml", content);
    }
}
