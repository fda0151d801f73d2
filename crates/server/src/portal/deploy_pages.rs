//! The portal's deployment pages: "Running where" on a service's page, the
//! deployment list, and one deployment (header, log with analysis values,
//! canary-vs-stable charts) that refreshes itself while in flight.
//!
//! The live view fetches `/deployments/{id}/state` — the page's `#deploy-state`
//! block rendered again on the server — once a second and swaps it in, so the
//! log and the SVG charts are drawn by the same Rust code as the first render
//! and the page needs no JavaScript library.

mod chart;

use super::layout::page;
use super::{PageError, PageResult, Viewer, html, valid_name};
use crate::api::deployments::DeploymentView;
use crate::api::environments::SeriesPoint;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use maud::{Markup, PreEscaped, html};
use pave_deploy::controller::host_for;
use pave_model::{EntityRef, Kind};
use pave_store::{DeploymentLogRow, DeploymentRow, EnvReleaseRow};
use serde::Deserialize;
use serde_json::Value;

/// Deployments listed on a service's page.
const SERVICE_PAGE_DEPLOYMENTS: i64 = 10;
/// Deployments on the list page.
const LIST_DEPLOYMENTS: i64 = 200;

/// Styles of the deployment pages.
const STYLE: &str = r#"
.dst { display:inline-block; padding:0 .5rem; border-radius:999px; font-size:.8rem; border:1px solid; white-space:nowrap; }
.dst-succeeded { color:#116329; background:#dafbe1; border-color:#8fd19e; }
.dst-failed, .dst-rolled_back, .dst-aborted { color:#a40e26; background:#ffebe9; border-color:#ff8182; }
.dst-progressing, .dst-pending { color:#0550ae; background:#ddf4ff; border-color:#80ccff; }
.dst-paused { color:#7d4e00; background:#fff8c5; border-color:#d4a72c; }
.dst-other { color:#57606a; background:#f6f8fa; border-color:#d0d7de; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.dlog td { font-size:.9rem; }
.dlog .kind { color:var(--muted); font-size:.8rem; text-transform:uppercase; }
.checks { margin:.3rem 0 0; width:auto; }
.checks td { border:0; padding:.1rem .6rem .1rem 0; font-size:.85rem; }
.ok { color:#116329; } .bad { color:#a40e26; font-weight:600; } .wait { color:var(--muted); }
.charts { display:flex; flex-wrap:wrap; gap:1.5rem; }
.charts figure { margin:0; }
.charts figcaption { font-size:.85rem; color:var(--muted); }
.legend-canary { color:#d4610c; font-weight:600; } .legend-stable { color:#1f6feb; font-weight:600; }
"#;

/// Refreshes `#deploy-state` from its `data-live` URL every second until the
/// server renders it without `data-live` (the deployment ended).
const LIVE_SCRIPT: &str = r#"
(function () {
  if (!window.fetch || !window.DOMParser) { return; }
  function tick() {
    var current = document.getElementById('deploy-state');
    var url = current && current.getAttribute('data-live');
    if (!url) { return; }
    fetch(url, { credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, 'text/html').getElementById('deploy-state');
        if (!fresh) { throw new Error('no state'); }
        document.getElementById('deploy-state').replaceWith(document.importNode(fresh, true));
        setTimeout(tick, 1000);
      })
      .catch(function () { setTimeout(tick, 3000); });
  }
  setTimeout(tick, 1000);
})();
"#;

fn styles() -> Markup {
    html! { style { (PreEscaped(STYLE)) } }
}

/// A coloured status pill for a deployment status.
fn status_pill(status: &str) -> Markup {
    let class = match status {
        "succeeded" | "failed" | "rolled_back" | "aborted" | "progressing" | "pending"
        | "paused" => status,
        _ => "other",
    };
    html! { span class={ "dst dst-" (class) } { (status.replace('_', " ")) } }
}

fn in_flight(status: &str) -> bool {
    matches!(status, "pending" | "progressing" | "paused")
}

/// The reason while it still says why the deployment is where it is: the
/// store keeps the last reason after a resume, so a progressing
/// deployment's reason is stale.
fn current_reason(d: &DeploymentView) -> Option<&str> {
    (d.status == "paused" || !in_flight(&d.status))
        .then_some(d.reason.as_deref())
        .flatten()
}

/// `sha256:4f2a9c1b2d3e`.
fn short_digest(digest: &str) -> &str {
    let cut = digest.find(':').map_or(12, |i| i + 13);
    digest.get(..cut).unwrap_or(digest)
}

fn short_sha(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// The deployments table shared by the list page and the service page.
fn deployments_table(list: &[DeploymentView], with_service: bool) -> Markup {
    html! {
        table {
            thead { tr {
                th { "#" } @if with_service { th { "Service" } } th { "Env" } th { "Kind" } th { "Strategy" }
                th { "Status" } th { "Weight" } th { "Digest" } th { "Created" }
            } }
            tbody {
                @for d in list {
                    tr {
                        td { a href={ "/deployments/" (d.id) } { "#" (d.number) } }
                        @if with_service { td { a href={ "/services/" (d.service) } { (d.service) } } }
                        td { (d.env) }
                        td { (d.kind) }
                        td { (d.strategy) }
                        td { (status_pill(&d.status)) @if let Some(r) = current_reason(d) { br; span.muted { (r) } } }
                        td { (d.weight) "%" }
                        td.mono { (short_digest(&d.digest)) }
                        td { (d.created_at) }
                    }
                }
            }
        }
    }
}

/// Running instances of each release, when this server runs deployments.
fn instance_count(state: &AppState, release: &str) -> Option<usize> {
    let controller = state.deploy.as_ref()?;
    Some(
        controller
            .runtime()
            .list()
            .iter()
            .filter(|i| i.spec.release == release)
            .count(),
    )
}

/// The service page's "Running where" section and recent deployments.
pub async fn running_where_section(
    state: &AppState,
    service_key: &str,
    service: &str,
) -> Result<Markup, PageError> {
    let releases = state.store.env_releases(Some(service_key)).await?;
    let recent = state
        .store
        .list_deployments(Some(service_key), None, SERVICE_PAGE_DEPLOYMENTS)
        .await?;
    let recent: Vec<DeploymentView> = recent.iter().map(DeploymentView::from).collect();
    Ok(running_where(state, service, &releases, &recent))
}

fn running_where(
    state: &AppState,
    service: &str,
    releases: &[EnvReleaseRow],
    recent: &[DeploymentView],
) -> Markup {
    html! {
        (styles())
        h2 { "Running where" }
        @if releases.is_empty() {
            p.muted { "Not deployed anywhere yet. " code { "pave deploy " (service) " --env dev" } }
        } @else {
            table {
                thead { tr { th { "Environment" } th { "Digest" } th { "Commit" } th { "Since" } th { "Instances" } th { "Host" } } }
                tbody {
                    @for r in releases {
                        tr {
                            td { (r.env) }
                            td.mono { a href={ "/deployments/" (r.deployment_id) } { (short_digest(&r.digest)) } }
                            td.mono { @match &r.sha { Some(s) => (short_sha(s)), None => span.muted { "—" } } }
                            td { (r.since) }
                            td { @match instance_count(state, &r.deployment_id) { Some(n) => (n), None => span.muted { "—" } } }
                            td.mono { (host_for(service, &r.env)) }
                        }
                    }
                }
            }
        }
        h2 { "Recent deployments" }
        @if recent.is_empty() {
            p.muted { "None yet." }
        } @else {
            (deployments_table(recent, false))
            p { a href={ "/deployments?service=" (service) } { "All deployments of " (service) } }
        }
    }
}

/// Filters of the deployment list page.
#[derive(Deserialize)]
pub struct ListFilter {
    pub service: Option<String>,
    pub env: Option<String>,
}

/// `/deployments`: deployments, newest first, optionally of one service/env.
pub async fn deployments_page(
    Viewer(viewer): Viewer,
    State(state): State<AppState>,
    Query(filter): Query<ListFilter>,
) -> PageResult {
    let service = filter.service.filter(|s| !s.is_empty());
    let env = filter.env.filter(|e| !e.is_empty());
    let key = match &service {
        Some(name) => {
            valid_name(name)?;
            Some(EntityRef::new(Kind::Component, "default", name).key())
        }
        None => None,
    };
    let rows = state
        .store
        .list_deployments(key.as_deref(), env.as_deref(), LIST_DEPLOYMENTS)
        .await?;
    let list: Vec<DeploymentView> = rows.iter().map(DeploymentView::from).collect();
    html(deployments_list(
        viewer.as_ref(),
        &list,
        service.as_deref(),
        env.as_deref(),
    ))
}

fn deployments_list(
    viewer: Option<&Principal>,
    list: &[DeploymentView],
    service: Option<&str>,
    env: Option<&str>,
) -> Markup {
    page(
        "Deployments",
        viewer,
        html! {
            (styles())
            h1 { "Deployments" }
            form method="get" action="/deployments" {
                input type="text" name="service" value=(service.unwrap_or("")) placeholder="service";
                " " input type="text" name="env" value=(env.unwrap_or("")) placeholder="environment";
                " " button type="submit" { "Filter" }
            }
            @if list.is_empty() {
                p.muted { "No deployments yet. Start one with " code { "pave deploy <service> --env <env>" } "." }
            } @else {
                (deployments_table(list, true))
            }
        },
    )
}

async fn load(
    state: &AppState,
    id: &str,
) -> Result<(DeploymentRow, Vec<DeploymentLogRow>), PageError> {
    let d = state
        .store
        .get_deployment(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no deployment `{id}`")))?;
    let log = state.store.deployment_log(id, 0).await?;
    Ok((d, log))
}

/// `/deployments/{id}`: one deployment, refreshing itself while in flight.
pub async fn deployment_page(
    Viewer(viewer): Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> PageResult {
    let (d, log) = load(&state, &id).await?;
    let view = DeploymentView::from(&d);
    let body = deploy_state(&view, &log, &metrics(&state, &d));
    html(page(
        &format!("{} #{} to {}", view.service, view.number, view.env),
        viewer.as_ref(),
        html! {
            (styles())
            p.muted {
                a href="/deployments" { "Deployments" } " / "
                a href={ "/services/" (view.service) } { (view.service) } " / #" (view.number)
            }
            (body)
            script { (PreEscaped(LIVE_SCRIPT)) }
        },
    ))
}

/// `/deployments/{id}/state`: the page's live block alone, for its refresh.
pub async fn deployment_state(State(state): State<AppState>, Path(id): Path<String>) -> PageResult {
    let (d, log) = load(&state, &id).await?;
    html(deploy_state(
        &DeploymentView::from(&d),
        &log,
        &metrics(&state, &d),
    ))
}

/// Per-second traffic of the new release and the stable one it replaces,
/// over the deployment's life (what `GET /api/v1/deployments/{id}/metrics`
/// answers); empty when this server runs no deploy controller.
fn metrics(state: &AppState, d: &DeploymentRow) -> (Vec<SeriesPoint>, Vec<SeriesPoint>) {
    let Some(controller) = state.deploy.as_ref() else {
        return (Vec::new(), Vec::new());
    };
    let m = crate::api::environments::series_of(controller, d);
    (m.canary, m.stable)
}

/// The live block: header, charts and log. While the deployment is in
/// flight it carries `data-live`, which the script polls.
fn deploy_state(
    d: &DeploymentView,
    log: &[DeploymentLogRow],
    (canary, stable): &(Vec<SeriesPoint>, Vec<SeriesPoint>),
) -> Markup {
    let live = in_flight(&d.status).then(|| format!("/deployments/{}/state", d.id));
    html! {
        div #deploy-state data-live=[live.as_deref()] {
            h1 { (d.service) " #" (d.number) " → " (d.env) " " (status_pill(&d.status)) }
            @if let Some(r) = current_reason(d) { p.error { (r) } }
            dl.facts {
                dt { "Service" } dd { a href={ "/services/" (d.service) } { (d.service) } }
                dt { "Environment" } dd { (d.env) }
                dt { "Kind" } dd { (d.kind) }
                dt { "Strategy" } dd { (d.strategy) }
                dt { "Status" } dd { (status_pill(&d.status)) " " span.muted { "stage " (d.stage) @if d.stage == "steps" { ", step " (d.step + 1) } } }
                dt { "Weight" } dd { (d.weight) "% of traffic on the new release" }
                dt { "Artifact" } dd { (d.artifact) " " span.mono { (d.digest) } }
                dt { "Built by" } dd {
                    @match &d.run_id { Some(r) => a href={ "/runs/" (r) } { "run " (r) }, None => span.muted { "—" } }
                    @if let Some(s) = &d.sha { " at " span.mono { (short_sha(s)) } }
                }
                dt { "By" } dd { (d.actor) }
                dt { "Created" } dd { (d.created_at) }
                dt { "Finished" } dd { @match &d.finished_at { Some(f) => (f), None => span.muted { "in flight" } } }
            }
            h2 { "Canary vs stable" }
            (chart::charts(canary, stable))
            h2 { "Log" }
            @if log.is_empty() {
                p.muted { "Nothing logged yet." }
            } @else {
                table.dlog {
                    thead { tr { th { "Time" } th { "Kind" } th { "What happened" } } }
                    tbody { @for l in log { (log_row(l)) } }
                }
            }
            @if live.is_some() { p.muted { "Live: this page follows the deployment until it ends." } }
        }
    }
}

fn log_row(l: &DeploymentLogRow) -> Markup {
    let verdict = if l.data["checks"].is_array() {
        Some(&l.data)
    } else if l.data["verdict"]["checks"].is_array() {
        Some(&l.data["verdict"])
    } else {
        None
    };
    let checks: &[Value] = verdict
        .and_then(|v| v["checks"].as_array())
        .map_or(&[], Vec::as_slice);
    html! {
        tr {
            td.mono { (l.time.get(11..19).unwrap_or(&l.time)) }
            td.kind { (l.kind) }
            td {
                (l.message)
                @if !checks.is_empty() {
                    table.checks { tbody { @for c in checks { (check_row(c)) } } }
                }
                @if let Some(ms) = l.data["ms_since_first_traffic"].as_u64() {
                    br; span.muted { "decided " (format!("{:.1}", ms as f64 / 1000.0)) "s after the new release first took traffic" }
                }
            }
        }
    }
}

fn check_row(c: &Value) -> Markup {
    let outcome = c["outcome"].as_str().unwrap_or("?");
    let class = match outcome {
        "pass" => "ok",
        "fail" => "bad",
        _ => "wait",
    };
    html! {
        tr {
            td class=(class) { (outcome) }
            td { (c["check"].as_str().unwrap_or("?")) }
            td.mono { "value " (number(&c["value"])) ", limit " (number(&c["threshold"])) }
            td.muted { (c["detail"].as_str().unwrap_or("")) }
        }
    }
}

/// A measured value with four significant digits, or `—`.
fn number(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x != 0.0 && (x.abs() < 0.001 || x.abs() >= 1e6) => format!("{x:.3e}"),
        Some(x) => {
            let s = format!("{x:.4}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        None => "—".to_string(),
    }
}
