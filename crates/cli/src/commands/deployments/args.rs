//! The flags and help texts of the deployment commands.

const DEPLOY_HELP: &str = "\
Deploys the artifact of the service's newest green run of its default branch
unless --artifact or --run names another. The server answers at once; the
deploy controller then rolls it out with the environment's strategy (rolling,
blue-green or canary with analysis) from the service's pave.yaml.

Examples:
  pave deploy hello --env dev --wait
  pave deploy hello --env staging --run 01J9Z3K7Q2 --artifact-name app
  pave deploy hello --env prod --artifact sha256:4f2a…  --json";

const PROMOTE_HELP: &str = "\
--to ENV deploys to ENV exactly the digest live in the environment before it on
the promotion path (`pave env list`). --env ENV --step ends the current pause or
analysis step of the canary in flight in ENV and goes on to the next step.

Examples:
  pave promote hello --to staging --wait
  pave promote hello --env prod --step";

const ADDRESS_HELP: &str = "\
Name a deployment by its id, or by service and environment (the one in flight).

Examples:
  pave abort 01J9Z4M2S8XQ6B0T7V5K3N1C9D
  pave abort hello --env prod";

/// Options of `pave deploy`.
#[derive(clap::Args)]
#[command(after_help = DEPLOY_HELP)]
pub struct DeployArgs {
    /// The service to deploy.
    pub service: String,
    /// Environment to deploy to (see `pave env list`).
    #[arg(long)]
    pub env: String,
    /// Deploy this artifact digest (`sha256:<hex>`) from one of the service's green runs.
    #[arg(long, conflicts_with = "run")]
    pub artifact: Option<String>,
    /// Deploy the artifact of this successful run.
    #[arg(long)]
    pub run: Option<String>,
    /// Which of the run's artifacts, when it produced several.
    #[arg(long)]
    pub artifact_name: Option<String>,
    /// Follow the rollout live; exit 0 if it succeeds, 1 if it fails, is rolled back or aborted.
    #[arg(long)]
    pub wait: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `pave promote`.
#[derive(clap::Args)]
#[command(after_help = PROMOTE_HELP)]
pub struct PromoteArgs {
    /// The service.
    pub service: String,
    /// Environment to promote into; the source is the one before it.
    #[arg(long, conflicts_with_all = ["step", "env"])]
    pub to: Option<String>,
    /// With --step: the environment whose in-flight canary to advance.
    #[arg(long, requires = "step")]
    pub env: Option<String>,
    /// End the current pause or analysis step of the deployment in flight.
    #[arg(long, requires = "env")]
    pub step: bool,
    /// Follow the rollout live; exit 0 if it succeeds, 1 otherwise.
    #[arg(long)]
    pub wait: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `pave rollback`.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  pave rollback hello --env prod --wait")]
pub struct RollbackArgs {
    /// The service.
    pub service: String,
    /// Environment to roll back to its previous good release.
    #[arg(long)]
    pub env: String,
    /// Follow the rollback live; exit 0 if it succeeds, 1 otherwise.
    #[arg(long)]
    pub wait: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `pave abort`, `pave pause` and `pave resume`.
#[derive(clap::Args)]
#[command(after_help = ADDRESS_HELP)]
pub struct ControlArgs {
    /// A deployment id, or a service name when --env is given.
    pub target: String,
    /// The environment whose in-flight deployment of the service to steer.
    #[arg(long)]
    pub env: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `pave deployments`.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  pave deployments\n  pave deployments --service hello --env prod --json"
)]
pub struct ListArgs {
    /// Only this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Only this environment.
    #[arg(long)]
    pub env: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `pave deployment`.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  pave deployment 01J9Z4M2S8XQ6B0T7V5K3N1C9D\n  pave deployment -f 01J9Z4M2S8XQ6B0T7V5K3N1C9D   # follow until it ends"
)]
pub struct ShowArgs {
    /// The deployment id (from `pave deployments`).
    pub id: String,
    /// Keep printing new log lines until the deployment ends (exit 0 only if it succeeded).
    #[arg(short, long)]
    pub follow: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `pave env` subcommands.
#[derive(clap::Subcommand)]
pub enum EnvCommand {
    /// List the environments in promotion order.
    #[command(after_help = "Example:\n  pave env list --json")]
    List(crate::commands::JsonFlag),
    /// Add an environment to the promotion path (admin).
    #[command(
        after_help = "Examples:\n  pave env create qa --after dev --description \"manual QA\"\n  pave env create prod"
    )]
    Create(EnvCreateArgs),
}

/// Options of `pave env create`.
#[derive(clap::Args)]
pub struct EnvCreateArgs {
    /// Name of the new environment.
    pub name: String,
    /// What it is for.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Place it right after this environment (default: at the end).
    #[arg(long)]
    pub after: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `pave service logs`.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  pave service logs hello --env dev --lines 50")]
pub struct ServiceLogsArgs {
    /// The service.
    pub service: String,
    /// The environment whose instances to read.
    #[arg(long)]
    pub env: String,
    /// The last N lines.
    #[arg(long, default_value_t = 100)]
    pub lines: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}
