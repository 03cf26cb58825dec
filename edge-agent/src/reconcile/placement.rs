//! Whether a workload belongs on this node, for `shoal-agent apply` on a device with no hub:
//! applying a whole fleet folder keeps exactly this node's share.

use shoal_model::fit;
use shoal_model::manifest::Workload;
use shoal_model::node::NodeFacts;

/// Why `workload` does not belong on `node`, or `None` when it does. Only node-local rules
/// are checked: the node selector and the constraints, as the hub checks them
/// ([`fit::mismatches`]; replica counts, spread and affinity need the fleet's view, which
/// only the hub has).
pub fn mismatch(workload: &Workload, node: &NodeFacts) -> Option<String> {
    let reasons: Vec<String> = fit::mismatches(&workload.spec.placement, node)
        .iter()
        .map(ToString::to_string)
        .collect();
    (!reasons.is_empty()).then(|| format!("not for this node: {}", reasons.join("; ")))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use shoal_model::manifest::parse_manifest;
    use shoal_model::node::Capacity;

    use super::*;

    /// The rules themselves are `shoal_model::fit`'s, tested there; this is the agent's
    /// wording around them.
    fn node() -> NodeFacts {
        NodeFacts {
            arch: "amd64".into(),
            capacity: Capacity {
                memory_bytes: 1 << 30,
                ..Capacity::default()
            },
            labels: [("role".to_string(), "gateway".to_string())].into(),
            ..NodeFacts::default()
        }
    }

    fn check(placement: &str, expected: Option<&str>) {
        let text = format!(
            "apiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: w }}\nspec:\n  placement: {placement}\n  containers: [{{ name: a, image: busybox }}]\n"
        );
        let (workloads, diagnostics) = parse_manifest(Path::new("t.yaml"), &text);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert_eq!(
            mismatch(&workloads[0].workload, &node()).as_deref(),
            expected,
            "{placement}"
        );
    }

    #[test]
    fn selectors_and_constraints_decide_whether_a_workload_is_this_nodes() {
        check("{ mode: every }", None);
        check(
            "{ nodeSelector: { role: gateway }, constraints: [\"memory >= 512Mi\"] }",
            None,
        );
        check(
            "{ nodeSelector: { role: camera } }",
            Some("not for this node: nodeSelector role=camera (node has role=gateway)"),
        );
        check(
            "{ nodeSelector: { site: a }, constraints: [\"arch in (arm64)\", \"memory >= 2Gi\"] }",
            Some("not for this node: nodeSelector site=a (node has no label site); constraint `arch in (arm64)` (arch is amd64); constraint `memory >= 2Gi` (memory is 1Gi)"),
        );
    }
}
