//! Deflates `data/iam-actions.tsv` into `OUT_DIR`: the table rides in the
//! `generate-policy` Lambda, whose binary must stay under 6 MB, and the
//! text (0.79 MB) compresses several times over. The TSV stays the source
//! of truth in the repository (diffable, refreshed by
//! `scripts/iam-action-table.py`); `table.rs` inflates it on first use.

fn main() {
    let src = std::path::Path::new("data/iam-actions.tsv");
    println!("cargo:rerun-if-changed={}", src.display());
    let text = std::fs::read(src).expect("data/iam-actions.tsv is readable");
    let packed = miniz_oxide::deflate::compress_to_vec(&text, 10);
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("iam-actions.tsv.deflate");
    std::fs::write(&out, packed).expect("OUT_DIR is writable");
}
