//! Every fuzz target on its seed corpus and on every input fuzzing found
//! (`fuzz/corpus/TARGET`, `fuzz/regressions/TARGET`): each must run to its
//! end (a panic fails the test), and every target must have seeds.

use std::path::PathBuf;

fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .map(|e| e.expect("a corpus entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read a corpus file");
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_target_has_seeds_and_runs_them_and_every_regression_without_a_panic() {
    for (target, run) in keel_fuzz::TARGETS {
        let seeds = inputs("corpus", target);
        assert!(
            !seeds.is_empty(),
            "fuzz/corpus/{target} has no seed inputs: make them with `cargo run -p keel-fuzz --bin seeds`"
        );
        for (path, bytes) in seeds.iter().chain(inputs("regressions", target).iter()) {
            eprintln!("{target}: {}", path.display());
            run(bytes);
        }
    }
}

#[test]
fn every_target_has_a_cargo_fuzz_entry() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for (target, _) in keel_fuzz::TARGETS {
        let src = std::fs::read_to_string(root.join("fuzz_targets").join(format!("{target}.rs")))
            .unwrap_or_else(|_| panic!("fuzz/fuzz_targets/{target}.rs is missing"));
        assert!(
            src.contains(&format!("keel_fuzz::{target}(")),
            "fuzz/fuzz_targets/{target}.rs does not run keel_fuzz::{target}"
        );
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "fuzz/Cargo.toml has no [[bin]] for {target}"
        );
    }
}
