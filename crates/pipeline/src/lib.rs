//! The pipeline room: plan a run (matrix expansion, the DAG of jobs,
//! expressions), and execute steps as child processes with a
//! content-addressed step cache, artifacts and JUnit reports. The same engine
//! serves `pave run` on a laptop and agents in CI.

// Planning (owned by the planner work): expressions and the job DAG.
pub mod expr;
pub mod plan;
// Matrix rules (fail-fast, max-parallel) shared by the local and server schedulers.
pub mod matrix_rules;

// Execution (owned by the executor work): processes, cache, artifacts, reports.
pub mod artifacts;
pub mod cache;
pub mod exec;
pub mod junit;
pub mod mask;

// Running jobs and whole plans (runner: one job, for agents and `pave run`;
// local: the DAG scheduler of `pave run`; workspace: clean source copies).
pub mod local;
pub mod runner;
pub mod workspace;
