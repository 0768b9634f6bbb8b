//! Request body caps (`CONTRACT.md`, "Body limits").

/// The output route (`POST /executions/{id}/output`) accepts bodies up to 5 MiB.
pub const OUTPUT_BODY_MAX: usize = 5 * 1024 * 1024;

/// Every other route accepts bodies up to 1 MiB.
pub const BODY_MAX: usize = 1024 * 1024;

/// The body cap of a request path.
pub fn body_max_for_path(path: &str) -> usize {
    if path.starts_with("/executions/") && path.ends_with("/output") {
        OUTPUT_BODY_MAX
    } else {
        BODY_MAX
    }
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
}
