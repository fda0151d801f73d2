//! The portal's pages.

use super::layout::page;
use crate::api::apply::REPOSITORY_ANNOTATION;
use crate::auth::Principal;
use crate::views::{ServiceSummary, TeamSummary, annotation, links, ref_name, service_summary};
use maud::{Markup, html};
use pave_store::{EntityRow, RunRow};
use std::collections::BTreeMap;

fn opt(value: &Option<String>) -> Markup {
    html! {
        @match value {
            Some(v) => (v),
            None => span.muted { "—" },
        }
    }
}

fn team_link(team: &Option<String>) -> Markup {
    html! {
        @match team {
            Some(t) => a href={ "/teams/" (t) } { (t) },
            None => span.muted { "—" },
        }
    }
}

/// Links an entity key (`kind:namespace/name`) to its page when the portal has one.
fn entity_link(key: &str) -> Markup {
    let name = ref_name(key);
    let in_default = key.contains(":default/");
    html! {
        @if in_default && key.starts_with("component:") {
            a href={ "/services/" (name) } { (key) }
        } @else if in_default && key.starts_with("group:") {
            a href={ "/teams/" (name) } { (key) }
        } @else {
            (key)
        }
    }
}

fn service_table(services: &[ServiceSummary]) -> Markup {
    html! {
        table {
            thead { tr { th { "Service" } th { "Owner" } th { "System" } th { "Lifecycle" } th { "Type" } th { "Description" } } }
            tbody {
                @for s in services {
                    tr {
                        td { a href={ "/services/" (s.name) } { (s.name) } }
                        td { (team_link(&s.owner)) }
                        td { (opt(&s.system)) }
                        td { @if let Some(l) = &s.lifecycle { span.pill { (l) } } }
                        td { (opt(&s.component_type)) }
                        td { (opt(&s.description)) }
                    }
                }
            }
        }
    }
}

/// The service list.
pub fn services(
    viewer: Option<&Principal>,
    services: &[ServiceSummary],
    query: &str,
    total: usize,
) -> Markup {
    page(
        "Services",
        viewer,
        html! {
            h1 { "Services" }
            form method="get" action="/" {
                input type="search" name="q" value=(query) placeholder="Filter by name, owner, system…";
                " " button type="submit" { "Filter" }
                " " span.muted { (services.len()) " of " (total) }
            }
            @if total == 0 {
                p.muted { "The catalog is empty. Register services with " code { "pave apply -f <dir>" } "." }
            } @else {
                (service_table(services))
            }
        },
    )
}

fn relations_table(relations: &BTreeMap<String, Vec<String>>) -> Markup {
    html! {
        @if relations.is_empty() {
            p.muted { "No relations." }
        } @else {
            table {
                thead { tr { th { "Relation" } th { "Entities" } } }
                tbody {
                    @for (rel, targets) in relations {
                        tr {
                            td { (rel) }
                            td { @for (i, t) in targets.iter().enumerate() { @if i > 0 { ", " } (entity_link(t)) } }
                        }
                    }
                }
            }
        }
    }
}

/// One service's page.
pub fn service(
    viewer: Option<&Principal>,
    row: &EntityRow,
    relations: &BTreeMap<String, Vec<String>>,
    runs: &[RunRow],
    deployments: Markup,
) -> Markup {
    let s = service_summary(row);
    let links = links(row);
    page(
        &s.name,
        viewer,
        html! {
            p.muted { a href="/" { "Services" } " / " (s.name) }
            h1 { (s.title.clone().unwrap_or_else(|| s.name.clone())) }
            @if let Some(d) = &s.description { p { (d) } }
            dl.facts {
                dt { "Owner" } dd { (team_link(&s.owner)) }
                dt { "System" } dd { (opt(&s.system)) }
                dt { "Lifecycle" } dd { (opt(&s.lifecycle)) }
                dt { "Type" } dd { (opt(&s.component_type)) }
                dt { "Tags" } dd { @if s.tags.is_empty() { span.muted { "—" } } @for t in &s.tags { span.pill { (t) } " " } }
                dt { "Repository" } dd { (opt(&annotation(row, REPOSITORY_ANNOTATION))) }
                dt { "Defined in" } dd { (opt(&row.origin)) }
                dt { "Updated" } dd { (row.updated_at) " (generation " (row.generation) ")" }
            }
            h2 { "Links" }
            @if links.is_empty() {
                p.muted { "No links." }
            } @else {
                ul { @for l in &links { li { a href=(l.url) rel="noopener" { (l.title.clone().unwrap_or_else(|| l.url.clone())) } } } }
            }
            h2 { "Relations" }
            (relations_table(relations))
            (super::run_pages::service_runs_section(&s.name, runs, super::runs::SERVICE_PAGE_RUNS as usize))
            (deployments)
        },
    )
}

/// The team list.
pub fn teams(viewer: Option<&Principal>, teams: &[TeamSummary]) -> Markup {
    page(
        "Teams",
        viewer,
        html! {
            h1 { "Teams" }
            @if teams.is_empty() {
                p.muted { "No teams yet." }
            } @else {
                table {
                    thead { tr { th { "Team" } th { "Type" } th { "Parent" } th { "Services" } th { "Description" } } }
                    tbody {
                        @for t in teams {
                            tr {
                                td { a href={ "/teams/" (t.name) } { (t.title.clone().unwrap_or_else(|| t.name.clone())) } }
                                td { (opt(&t.group_type)) }
                                td { (team_link(&t.parent)) }
                                td { (t.services) }
                                td { (opt(&t.description)) }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// One team's page.
pub fn team(
    viewer: Option<&Principal>,
    team: &TeamSummary,
    services: &[ServiceSummary],
    relations: &BTreeMap<String, Vec<String>>,
) -> Markup {
    page(
        &team.name,
        viewer,
        html! {
            p.muted { a href="/teams" { "Teams" } " / " (team.name) }
            h1 { (team.title.clone().unwrap_or_else(|| team.name.clone())) }
            @if let Some(d) = &team.description { p { (d) } }
            dl.facts {
                dt { "Type" } dd { (opt(&team.group_type)) }
                dt { "Parent" } dd { (team_link(&team.parent)) }
                dt { "Services" } dd { (services.len()) }
            }
            h2 { "Services owned" }
            @if services.is_empty() { p.muted { "None." } } @else { (service_table(services)) }
            h2 { "Relations" }
            (relations_table(relations))
        },
    )
}

/// The sign-in page.
pub fn login(viewer: Option<&Principal>, error: Option<&str>) -> Markup {
    page(
        "Sign in",
        viewer,
        html! {
            h1 { "Sign in" }
            p { "Paste a Pave token (" code { "pave token create" } ", or the bootstrap token in " code { ".pave/admin-token" } ")." }
            @if let Some(e) = error { p.error { (e) } }
            form method="post" action="/login" {
                input type="password" name="token" autocomplete="off" size="72" placeholder="pave_…" required;
                " " button type="submit" { "Sign in" }
            }
        },
    )
}
