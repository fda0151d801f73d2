//! The matrix rules a server scheduler enforces over a job's legs (its
//! matrix instances), following GitHub Actions:
//!
//! * `strategy.fail-fast` (default true): when a leg fails, the legs of the
//!   same job that have not finished are cancelled — pending ones never
//!   start, running ones are told to stop. A leg with `continue-on-error`
//!   does not trigger it (its failure concludes `success`).
//! * `strategy.max-parallel: N`: at most N legs of the job run at once.
//!
//! The planner records both on each [`PlannedJob`] (`fail_fast_group`,
//! `max_parallel`); these functions say what they mean for one leg, so
//! every scheduler reads them the same way.

use crate::plan::{Outcome, PlannedJob};

/// What the matrix strategy asks of one leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegRules {
    /// A failure of this leg cancels its unfinished sibling legs.
    pub fail_fast: bool,
    /// At most this many legs of the job run at once (at least 1).
    pub max_parallel: Option<u32>,
}

/// The rules of a planned job instance (none for a job without a matrix
/// strategy).
pub fn leg_rules(job: &PlannedJob) -> LegRules {
    LegRules {
        fail_fast: job.fail_fast_group.is_some() && !job.spec.continue_on_error.is_true(),
        max_parallel: job.max_parallel.map(|n| n.max(1)),
    }
}

/// Whether a leg that ended with `outcome` (as reported, before
/// `continue-on-error`) cancels its unfinished siblings.
pub fn triggers_fail_fast(rules: LegRules, outcome: Outcome) -> bool {
    rules.fail_fast && outcome == Outcome::Failure
}

/// Whether one more leg may start when `running` legs of the same job are
/// already running.
pub fn may_start(rules: LegRules, running: usize) -> bool {
    rules
        .max_parallel
        .is_none_or(|max| running < usize::try_from(max).unwrap_or(usize::MAX))
}

/// Why a sibling leg was cancelled, for logs and the portal.
pub fn fail_fast_reason(failed_key: &str) -> String {
    format!("cancelled by fail-fast: `{failed_key}` failed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::plan;
    use pave_model::parse_pave_yaml;

    fn planned(strategy: &str) -> Vec<PlannedJob> {
        let text = format!(
            "service:\n  name: s\n  owner: t\npipeline:\n  jobs:\n    test:\n{strategy}      steps:\n        - run: 'true'\n"
        );
        let doc = parse_pave_yaml("pave.yaml", &text).expect("valid pave.yaml");
        plan(&doc.pipeline.expect("pipeline")).expect("plan").jobs
    }

    #[test]
    fn fail_fast_is_on_by_default_for_matrix_legs_only() {
        let legs = planned("      strategy:\n        matrix:\n          n: [1, 2]\n");
        assert!(legs.iter().all(|l| leg_rules(l).fail_fast));
        assert!(triggers_fail_fast(leg_rules(&legs[0]), Outcome::Failure));
        assert!(!triggers_fail_fast(leg_rules(&legs[0]), Outcome::Cancelled));
        let plain = planned("");
        assert_eq!(leg_rules(&plain[0]), LegRules::default());
    }

    #[test]
    fn fail_fast_false_and_continue_on_error_do_not_cancel_siblings() {
        let off = planned(
            "      strategy:\n        fail-fast: false\n        matrix:\n          n: [1, 2]\n",
        );
        assert!(!leg_rules(&off[0]).fail_fast);
        let tolerant = planned(
            "      continue-on-error: true\n      strategy:\n        matrix:\n          n: [1, 2]\n",
        );
        assert!(!leg_rules(&tolerant[1]).fail_fast);
    }

    #[test]
    fn max_parallel_limits_running_legs() {
        let legs = planned(
            "      strategy:\n        max-parallel: 2\n        matrix:\n          n: [1, 2, 3]\n",
        );
        let rules = leg_rules(&legs[2]);
        assert_eq!(rules.max_parallel, Some(2));
        assert!(may_start(rules, 1));
        assert!(!may_start(rules, 2));
        assert!(may_start(LegRules::default(), 1000));
    }
}
