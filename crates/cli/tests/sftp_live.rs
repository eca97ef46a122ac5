//! The `ferry` binary on a CSV folder of the live OpenSSH server (scripts/peers/sshd, port 18302), logging
//! in with a private key stored as an encrypted secret (`ferry secrets set --from-env`) and referred to as
//! `private_key = { secret = "…" }`: `ferry check` and `ferry sync` work, and the key never shows.

#[path = "../../connectors/tests/support/sshd.rs"]
#[allow(dead_code)] // the connectors tests use the rest
mod sshd;

use std::path::Path;
use std::process::{Command, Output};

fn ferry(dir: &Path, key_file: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.current_dir(dir).env_remove("FERRY_CONFIG").env_remove("FERRY_MASTER_KEY").env("FERRY_MASTER_KEY_FILE", key_file).env("FERRY_LOG", "debug");
    c.arg("--config").arg(dir.join("ferry.toml"));
    c
}

fn shown(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn a_key_stored_as_a_secret_logs_in_to_the_sftp_folder_and_never_shows() {
    let erp = sshd::folder("cli");
    erp.put("products.csv", "sku,name,price.amount\nCLI-1,Spade,19.95\nCLI-2,Rake,12.50\n");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("ferry.toml"),
        format!(
            "[connections.erp]\ntype = \"csv\"\npath = \"{url}\"\nprivate_key = {{ secret = \"erp-sftp-key\" }}\nknown_hosts_path = \"{kh}\"\npickup = \"rename\"\n\
             [connections.shop]\ntype = \"jsonl\"\npath = \"shop\"\n\
             [flows.products]\nsource = \"erp\"\ntarget = \"shop\"\nstream = \"products\"\n[flows.products.mapping]\n\
             set = {{ \"price.currency\" = \"AUD\", \"price.tax_inclusive\" = true }}\n",
            url = erp.url,
            kh = sshd::peer_dir().join("known_hosts").display()
        ),
    )
    .unwrap();
    let master = d.join("master.key");
    let out = ferry(d, &master).args(["secrets", "init", "--key-file"]).arg(&master).output().unwrap();
    assert!(out.status.success(), "{}", shown(&out));
    // A key has several lines; `$(cat key)` hands it over without its last newline.
    let key = std::fs::read_to_string(sshd::peer_dir().join("user_ed25519")).unwrap().trim_end().to_owned();
    let out = ferry(d, &master).args(["secrets", "set", "erp-sftp-key", "--from-env", "ERP_KEY"]).env("ERP_KEY", &key).output().unwrap();
    assert!(out.status.success(), "{}", shown(&out));

    let key_body: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let never_shown = |out: &Output| {
        let text = shown(out);
        for line in &key_body {
            assert!(!text.contains(line), "the private key showed:\n{text}");
        }
        text
    };
    let out = ferry(d, &master).arg("check").output().unwrap();
    let text = never_shown(&out);
    assert!(out.status.success() && text.contains("host key verified"), "{text}");
    let out = ferry(d, &master).args(["--json", "sync", "products"]).output().unwrap();
    let text = never_shown(&out);
    assert!(out.status.success(), "{text}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["counts"]["created"], 2, "{report}");
    assert!(std::fs::read_to_string(d.join("shop/products.jsonl")).unwrap().contains("CLI-2"));
}
