//! `pave`: the Pave command line — run the platform (`pave up`) and talk to it.

mod agent;
mod client;
mod commands;
mod config;
mod output;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

// The catalog import and the API allocate many small strings and JSON values;
// mimalloc is markedly faster at that than the system allocator here.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Pave: the paved road from idea to production, in one binary.
#[derive(Parser)]
#[command(name = "pave", version, about, long_about = None, after_help = "\
Start the platform with `pave up`, then, in another terminal in the same directory:
  pave apply -f catalog/       register teams and services
  pave services                list them
  pave audit verify            check the tamper-evident event log

The server and token come from --server/--token (PAVE_SERVER/PAVE_TOKEN), else
`pave login`, else the .pave/ directory that `pave up` writes.")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Pave server URL.
    #[arg(long, global = true, env = "PAVE_SERVER")]
    server: Option<String>,
    /// API token.
    #[arg(long, global = true, env = "PAVE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the platform: API, portal and event log on an embedded database.
    Up(commands::up::UpArgs),
    /// The whole paved road in a few minutes: a service from a golden path,
    /// its pipeline, dev → staging → prod through a canary under load, and a
    /// bad release rolled back on its own. Leaves the portal running.
    Demo(commands::demo::DemoArgs),
    /// Save a server URL and token for later commands.
    Login(commands::login::LoginArgs),
    /// Forget saved credentials.
    Logout,
    /// Show who the current token is.
    Whoami(commands::JsonFlag),
    /// Register or update teams and services from pave.yaml and catalog-info.yaml files.
    Apply(commands::apply::ApplyArgs),
    /// List services.
    Services(commands::catalog::ListArgs),
    /// Show one service; `pave service set-repo` changes where it builds from, `pave service logs` reads its instances' output.
    Service(commands::catalog::ServiceArgs),
    /// List teams.
    Teams(commands::catalog::ListArgs),
    /// Show one team and the services it owns.
    Team(commands::catalog::ShowArgs),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(commands::tokens::TokenCommand),
    /// Read and verify the tamper-evident event log.
    #[command(subcommand)]
    Audit(commands::audit::AuditCommand),
    /// Run this repository's pipeline here, with the engine agents use.
    #[command(after_help = commands::run::AFTER_HELP)]
    Run(commands::run::RunArgs),
    /// Run a service's pipeline on the server's agents.
    Trigger(commands::pipelines::TriggerArgs),
    /// List a service's pipeline runs.
    Runs(commands::pipelines::RunsArgs),
    /// Print (or follow with -f) a run's log.
    Logs(commands::pipelines::LogsArgs),
    /// Cancel a run.
    Cancel(commands::pipelines::CancelArgs),
    /// Test results, flaky tests and the test quarantine.
    #[command(subcommand)]
    Tests(commands::tests::TestsCommand),
    /// Manage a service's pipeline secrets (stored encrypted; masked in logs).
    #[command(subcommand)]
    Secret(commands::secrets::SecretCommand),
    /// Reusable pipeline templates (`uses: name@version` in a pipeline): publish, list, show.
    #[command(subcommand, name = "pipeline-template")]
    PipelineTemplate(commands::pipeline_templates::PipelineTemplateCommand),
    /// Run jobs for a Pave server (pulls work; the server never connects to agents).
    /// Give it an agent token: `pave token create --role agent`.
    Agent(agent::AgentArgs),
    /// Deploy a service's artifact to an environment (progress live with --wait).
    Deploy(commands::deployments::DeployArgs),
    /// Promote what runs in the previous environment (--to), or advance a canary (--step).
    Promote(commands::deployments::PromoteArgs),
    /// Roll an environment back to the service's previous good release.
    Rollback(commands::deployments::RollbackArgs),
    /// Abort a deployment in flight: all traffic back to the stable release.
    Abort(commands::deployments::ControlArgs),
    /// Pause a deployment in flight where it is.
    Pause(commands::deployments::ControlArgs),
    /// Resume a paused deployment.
    Resume(commands::deployments::ControlArgs),
    /// List deployments, newest first.
    Deployments(commands::deployments::ListArgs),
    /// Show one deployment: status, steps, analysis values and decisions.
    Deployment(commands::deployments::ShowArgs),
    /// The environments of the promotion path: list, create.
    #[command(subcommand)]
    Env(commands::deployments::EnvCommand),
    /// Create a service repository from a golden path (`pave templates` lists them).
    New(commands::new::NewArgs),
    /// List the golden-path templates and their versions.
    Templates(commands::JsonFlag),
    /// Golden-path templates: show parameters.
    #[command(subcommand)]
    Template(commands::templates::TemplateCommand),
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`pave audit log | head`) like other Unix tools,
    // instead of panicking inside println!.
    // SAFETY: setting a signal disposition to the default before any threads start.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            commands::report_error(&e);
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let (server, token) = (cli.server, cli.token);
    match cli.command {
        Command::Up(args) => commands::up::run(args).await,
        Command::Demo(args) => commands::demo::run(args).await,
        Command::Login(args) => commands::login::login(args, server, token).await,
        Command::Logout => commands::login::logout(),
        Command::Whoami(args) => commands::login::whoami(args, server, token).await,
        Command::Apply(args) => commands::apply::run(args, server, token).await,
        Command::Services(args) => commands::catalog::services(args, server, token).await,
        Command::Service(args) => commands::catalog::service(args, server, token).await,
        Command::Teams(args) => commands::catalog::teams(args, server, token).await,
        Command::Team(args) => commands::catalog::team(args, server, token).await,
        Command::Token(cmd) => commands::tokens::run(cmd, server, token).await,
        Command::Audit(cmd) => commands::audit::run(cmd, server, token).await,
        Command::Run(args) => commands::run::run(args, server, token).await,
        Command::Trigger(args) => commands::pipelines::trigger(args, server, token).await,
        Command::Runs(args) => commands::pipelines::runs(args, server, token).await,
        Command::Logs(args) => commands::pipelines::logs(args, server, token).await,
        Command::Cancel(args) => commands::pipelines::cancel(args, server, token).await,
        Command::Tests(cmd) => commands::tests::run(cmd, server, token).await,
        Command::Secret(cmd) => commands::secrets::run(cmd, server, token).await,
        Command::PipelineTemplate(cmd) => {
            commands::pipeline_templates::run(cmd, server, token).await
        }
        Command::Agent(args) => commands::agent(args, server, token).await,
        Command::Deploy(args) => commands::deployments::deploy(args, server, token).await,
        Command::Promote(args) => commands::deployments::promote(args, server, token).await,
        Command::Rollback(args) => commands::deployments::rollback(args, server, token).await,
        Command::Abort(args) => commands::deployments::control("abort", args, server, token).await,
        Command::Pause(args) => commands::deployments::control("pause", args, server, token).await,
        Command::Resume(args) => {
            commands::deployments::control("resume", args, server, token).await
        }
        Command::Deployments(args) => commands::deployments::list(args, server, token).await,
        Command::Deployment(args) => commands::deployments::show(args, server, token).await,
        Command::Env(cmd) => commands::deployments::env(cmd, server, token).await,
        Command::New(args) => commands::new::run(args, server, token).await,
        Command::Templates(args) => commands::templates::list(args.json),
        Command::Template(cmd) => commands::templates::run(cmd),
    }
}
