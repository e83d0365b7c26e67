//! Which container images a function may name itself ("custom images"), checked the same way
//! by the API (at creation and at every invocation) and by each agent (before it creates a
//! container): an operator's allowlist of image name prefixes.
//!
//! A prefix matches at a reference boundary only: `team/fn` allows `team/fn`, `team/fn:1`,
//! `team/fn@sha256:…` and `team/fn/sub`, never `team/fnord`. A prefix that ends in `/`, `:` or
//! `@` already is a boundary. An empty list allows no custom image at all. Matching is on the
//! text as written: `docker.io/team/fn` and `team/fn` are different texts, and the refusal is
//! the safe side of that difference.

/// Whether `image` starts with one of `prefixes` at a reference boundary.
pub fn allowed(image: &str, prefixes: &[String]) -> bool {
    prefixes.iter().any(|prefix| matches(image, prefix))
}

fn matches(image: &str, prefix: &str) -> bool {
    if prefix.is_empty() {
        return false;
    }
    let Some(rest) = image.strip_prefix(prefix) else {
        return false;
    };
    prefix.ends_with(['/', ':', '@']) || rest.is_empty() || rest.starts_with(['/', ':', '@'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(prefixes: &[&str], cases: &[(&str, bool)]) {
        let prefixes: Vec<String> = prefixes.iter().map(|p| (*p).to_owned()).collect();
        for (image, expected) in cases {
            assert_eq!(
                allowed(image, &prefixes),
                *expected,
                "{image} with {prefixes:?}"
            );
        }
    }

    #[test]
    fn prefixes_match_at_reference_boundaries_only() {
        check(
            &["team/fn", "registry.local/tools/", "other:"],
            &[
                ("team/fn", true),
                ("team/fn:1.0", true),
                ("team/fn@sha256:0123", true),
                ("team/fn/worker:2", true),
                ("team/fnord:1", false),
                ("team/f", false),
                ("docker.io/team/fn:1", false),
                ("registry.local/tools/x:1", true),
                ("registry.local/toolsx:1", false),
                ("other:tag", true),
                ("otherwise:tag", false),
            ],
        );
    }

    #[test]
    fn no_prefix_allows_nothing() {
        check(&[], &[("fresco/python3:dev", false), ("", false)]);
        check(&[""], &[("anything:1", false)]);
    }
}
