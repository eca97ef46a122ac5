//! Every GraphQL document the Shopify connector sends (crates/connectors/src/shopify/graphql/*.graphql)
//! validates against Shopify's official Admin API schema, version 2026-10: a field renamed or an argument
//! dropped in the schema fails here (and in CI), not at a shop.
//!
//! The schema and graphql-js come from the project's scripts (scripts/peers/shopify/schema.sh and
//! install.sh, cached under `<peers dir>/shopify-schema`); validate.mjs prints every error as FILE:LINE:COL.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

fn run(script: &Path, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(if script.extension().is_some_and(|e| e == "mjs") { "node" } else { "bash" })
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{} failed:\n{text}", script.display());
    text
}

/// The connector's documents, sorted; panics when there are none (a moved folder must not pass silently).
fn documents() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/shopify/graphql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "graphql"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "expected the connector's documents in {}, found {files:?}", dir.display());
    files
}

#[test]
fn every_document_validates_against_the_admin_api_schema_2026_10() {
    let root = workspace_root();
    let dir = ferry_testkit::peers_dir().join("shopify-schema");
    let schema_out = run(&root.join("scripts/peers/shopify/schema.sh"), &[dir.as_os_str()]);
    let schema = PathBuf::from(schema_out.lines().last().expect("schema.sh prints the schema's path").trim());
    assert!(schema.is_file(), "schema.sh named {}, which is not a file", schema.display());
    run(&root.join("scripts/peers/shopify/install.sh"), &[dir.as_os_str()]);
    let files = documents();
    let mut args: Vec<&std::ffi::OsStr> = vec![schema.as_os_str()];
    args.extend(files.iter().map(|f| f.as_os_str()));
    run(&root.join("scripts/peers/shopify/validate.mjs"), &args);
}

/// One named operation per file, named like the file: the connector's request log and Shopify's own
/// logs then name the same operation, and no document is built from strings at run time.
#[test]
fn each_file_holds_one_operation_named_like_the_file() {
    for file in documents() {
        let text = std::fs::read_to_string(&file).unwrap();
        let stem = file.file_stem().unwrap().to_str().unwrap().to_owned();
        let operations: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("query ") || l.starts_with("mutation "))
            .map(|l| l.split([' ', '(', '{']).nth(1).unwrap_or_default())
            .collect();
        assert_eq!(operations, vec![stem.as_str()], "{}: one operation named {stem}", file.display());
    }
}
