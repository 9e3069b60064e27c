//! What the fuzz target (fuzz/fuzz_targets/topology.rs) runs on every input, and the tests
//! that replay the inputs it once crashed on (fuzz/regressions/).

use crate::plan::{Facts, Plan};
use crate::{Source, Topology};

/// Parses, checks and plans `text`, and renders whatever error comes out (spans into
/// arbitrary text included). Panics only on a bug.
pub fn check(text: &str) {
    match Topology::parse(Source::new("fuzz.toml", text)) {
        Ok(topology) => match Plan::new(&topology, &Facts::default()) {
            Ok(plan) => {
                let _ = crate::graph::mermaid(&plan, None);
                let _ = crate::graph::dot(&plan, None);
                let _ = serde_json::to_string(&plan);
            }
            Err(e) => {
                let _ = (e.to_string(), e.location());
            }
        },
        Err(e) => {
            let _ = (e.to_string(), e.location());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every input the fuzzer ever crashed on, and every topology the repository has.
    #[test]
    fn regressions_and_examples_do_not_panic() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut n = 0;
        for dir in ["fuzz/regressions", "topologies", "tests/bad"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
                // A lab folder's topology is its lab.toml.
                let path = entry.path();
                let path = if path.is_dir() { path.join("lab.toml") } else { path };
                let bytes = std::fs::read(path).unwrap();
                super::check(&String::from_utf8_lossy(&bytes));
                n += 1;
            }
        }
        assert!(n > 20, "only {n} inputs found");
    }
}
