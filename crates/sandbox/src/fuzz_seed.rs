//! Seeds for the fuzz targets (`fuzz/`, docs/security.md "Fuzzing"): with
//! `FUZZ_SEED_DIR` set (`scripts/fuzz-corpus` sets it while it runs tests), every
//! message the sandbox sends or receives is also written to `<dir>/<target>/<sha256 prefix>`,
//! so the corpus starts from the real messages the test suites exchange. Unset: nothing.
//! (Not `MARKETLINK_…`: the server's configuration refuses unknown variables of its prefix.)

use std::path::Path;

use sha2::{Digest, Sha256};

/// The environment variable naming the corpus directory.
pub const CORPUS_ENV: &str = "FUZZ_SEED_DIR";

/// Keeps `bytes` as a seed of fuzz target `target`, when a corpus directory is set.
pub fn fuzz_seed(target: &str, bytes: &[u8]) {
    let Some(dir) = std::env::var_os(CORPUS_ENV) else {
        return;
    };
    let dir = Path::new(&dir).join(target);
    let name = hex::encode(&Sha256::digest(bytes)[..8]);
    // Best effort: a seed that cannot be written is only a smaller corpus.
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(name), bytes);
    }
}
