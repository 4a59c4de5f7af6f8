//! Randomly mutated manifests never panic the parser, every failed document carries at least one
//! error with its own index, and every object that validates survives a JSON round trip
//! unchanged. Seeds are fixed (every run is the same) and failure messages name the seed.

use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use skiff_manifests::{Object, Valid, parse_file};

const ROUNDS: u64 = 400;

fn fixtures() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut texts = Vec::new();
    for sub in ["valid", "invalid"] {
        let entries = std::fs::read_dir(dir.join(sub)).unwrap_or_else(|e| panic!("{sub}: {e}"));
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            texts.push(
                std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            );
        }
    }
    texts
}

fn mutate(text: &str, rng: &mut StdRng) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for _ in 0..rng.random_range(1..4) {
        if lines.is_empty() {
            break;
        }
        let at = rng.random_range(0..lines.len());
        match rng.random_range(0..6) {
            0 => {
                lines.remove(at);
            }
            1 => {
                let copy = lines[at].clone();
                lines.insert(at, copy);
            }
            2 => {
                let other = rng.random_range(0..lines.len());
                lines.swap(at, other);
            }
            3 => {
                let line = &mut lines[at];
                if !line.is_empty() {
                    let cut = rng.random_range(0..line.len());
                    if line.is_char_boundary(cut) {
                        line.truncate(cut);
                    }
                }
            }
            4 => {
                let junk = [
                    ":", "-", "{", "\"", " ", "x", "1", "---", "- ", "[", "~", "!", "&a", "*a",
                ];
                let piece = junk[rng.random_range(0..junk.len())];
                let line = &mut lines[at];
                let pos = rng.random_range(0..=line.len());
                if line.is_char_boundary(pos) {
                    line.insert_str(pos, piece);
                }
            }
            _ => lines[at] = "  ".repeat(rng.random_range(0..4)) + "extra: 1",
        }
    }
    lines.join("\n")
}

#[test]
fn mutated_manifests_never_panic_and_always_explain_themselves() {
    let texts = fixtures();
    for seed in 0..ROUNDS {
        let mut rng = StdRng::seed_from_u64(seed);
        let base = &texts[rng.random_range(0..texts.len())];
        let text = mutate(base, &mut rng);
        let parsed = parse_file("mutant.yaml", text.as_bytes());
        for document in &parsed.documents {
            match &document.result {
                Ok(object) => {
                    let again = Valid::<Object>::from_json(&object.to_json());
                    assert_eq!(
                        again.as_ref(),
                        Ok(object),
                        "seed {seed}: round trip changed\n{text}"
                    );
                }
                Err(errors) => {
                    assert!(
                        !errors.is_empty(),
                        "seed {seed}: failed document without errors\n{text}"
                    );
                    for error in errors {
                        assert_eq!(error.document, document.index, "seed {seed}");
                        assert_eq!(error.file, "mutant.yaml");
                        assert!(!error.message.is_empty(), "seed {seed}");
                    }
                }
            }
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..300 {
        let len = rng.random_range(0..200);
        let alphabet = b"ab:{}[]-\n \t\"'#&*!|>0123456789.,%@`\xff";
        let bytes: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())])
            .collect();
        let parsed = parse_file("random", &bytes);
        for document in &parsed.documents {
            if let Err(errors) = &document.result {
                assert!(!errors.is_empty(), "round {round}: {bytes:?}");
            }
        }
    }
}
