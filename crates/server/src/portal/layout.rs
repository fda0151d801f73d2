//! The page frame shared by every portal page.

use crate::auth::Principal;
use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, html};

const STYLE: &str = r#"
:root { --fg:#1d232a; --muted:#5b6672; --line:#e3e7eb; --accent:#1f6feb; --bg:#fff; --soft:#f6f8fa; }
* { box-sizing: border-box; }
body { margin:0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
header { display:flex; gap:1.5rem; align-items:center; padding:.6rem 1.5rem; border-bottom:1px solid var(--line); background:var(--soft); }
header .brand { font-weight:700; color:var(--fg); text-decoration:none; }
header nav a { margin-right:1rem; color:var(--muted); text-decoration:none; }
header nav a:hover { color:var(--accent); }
header .who { margin-left:auto; color:var(--muted); display:flex; gap:.6rem; align-items:center; }
main { max-width: 72rem; margin: 1.5rem auto; padding: 0 1.5rem; }
h1 { font-size:1.5rem; margin:.2rem 0 1rem; }
h2 { font-size:1.1rem; margin:1.6rem 0 .6rem; }
table { border-collapse: collapse; width:100%; }
th, td { text-align:left; padding:.45rem .6rem; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-weight:600; color:var(--muted); font-size:.85rem; text-transform:uppercase; letter-spacing:.03em; }
a { color:var(--accent); }
.muted { color:var(--muted); }
.pill { display:inline-block; padding:0 .5rem; border-radius:999px; background:var(--soft); border:1px solid var(--line); font-size:.8rem; }
dl.facts { display:grid; grid-template-columns: 10rem 1fr; gap:.3rem 1rem; }
dl.facts dt { color:var(--muted); }
dl.facts dd { margin:0; }
form.inline { display:inline; }
input[type=text], input[type=password], input[type=search] { padding:.4rem .6rem; border:1px solid var(--line); border-radius:6px; font:inherit; }
button { padding:.35rem .8rem; border:1px solid var(--line); border-radius:6px; background:var(--bg); font:inherit; cursor:pointer; }
.error { color:#b42318; }
"#;

/// Wraps a page body in the portal frame.
pub fn page(title: &str, viewer: Option<&Principal>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Pave" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                header {
                    a.brand href="/" { "Pave" }
                    nav {
                        a href="/" { "Services" }
                        a href="/teams" { "Teams" }
                        a href="/deployments" { "Deployments" }
                        a href="/api/v1/openapi.json" { "API" }
                    }
                    div.who {
                        @if let Some(p) = viewer {
                            span { "Signed in: " strong { (p.name) } " (" (p.role.as_str()) ")" }
                            form.inline method="post" action="/logout" { button type="submit" { "Sign out" } }
                        } @else {
                            a href="/login" { "Sign in" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page that says what went wrong.
pub fn error_page(status: StatusCode, message: &str) -> Markup {
    page(
        status.canonical_reason().unwrap_or("Error"),
        None,
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p.error { (message) }
            p { a href="/" { "Back to services" } }
        },
    )
}
