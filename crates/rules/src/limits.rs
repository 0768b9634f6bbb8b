//! Request body caps (`docs/api.md`, "Limits"; `docs/batch.md`).

/// The output route (`POST /executions/{id}/output`) and the batch route
/// (`POST /executions/{id}/batch`, for the whole batch) accept bodies up to
/// 5 MiB.
pub const OUTPUT_BODY_MAX: usize = 5 * 1024 * 1024;

/// Every other route accepts bodies up to 1 MiB.
pub const BODY_MAX: usize = 1024 * 1024;

/// The body cap of a request path: 5 MiB for exactly
/// `/executions/{id}/output` and `/executions/{id}/batch`, 1 MiB for
/// everything else (a variable named `output` or `batch` included).
pub fn body_max_for_path(path: &str) -> usize {
    let is_large = path.strip_prefix("/executions/").is_some_and(|rest| {
        ["/output", "/batch"].iter().any(|route| {
            rest.strip_suffix(route)
                .is_some_and(|id| !id.is_empty() && !id.contains('/'))
        })
    });
    if is_large { OUTPUT_BODY_MAX } else { BODY_MAX }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_route_gets_five_mebibytes_and_every_other_route_one() {
        assert_eq!(body_max_for_path("/executions/e1/output"), 5_242_880);
        assert_eq!(body_max_for_path("/executions/e1/condition"), 1_048_576);
        assert_eq!(body_max_for_path("/tool-actions/execute"), 1_048_576);
    }

    #[test]
    fn a_whole_batch_gets_five_mebibytes() {
        assert_eq!(body_max_for_path("/executions/e1/batch"), OUTPUT_BODY_MAX);
        assert_eq!(
            body_max_for_path("/executions/e1/variables/batch"),
            BODY_MAX
        );
        assert_eq!(body_max_for_path("/executions//batch"), BODY_MAX);
    }

    #[test]
    fn a_variable_named_output_keeps_the_one_mebibyte_cap() {
        assert_eq!(
            body_max_for_path("/executions/e1/variables/output"),
            BODY_MAX
        );
        assert_eq!(
            body_max_for_path("/executions/e1/variables/a/output"),
            BODY_MAX
        );
        assert_eq!(body_max_for_path("/executions//output"), BODY_MAX);
        assert_eq!(body_max_for_path("/x/executions/e1/output"), BODY_MAX);
    }
}
