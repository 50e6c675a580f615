//! The `castplane-agent` binary checks its settings before it connects or starts anything:
//! exit status 2, every problem named at once.

use std::process::Command;

#[test]
fn bad_settings_exit_2_naming_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_castplane-agent"))
        .args(["join", "--control-plane", "cp.example.net:7401"])
        .args(["--token", "not-a-token", "--data-dir"])
        .arg(dir.path().join("agent"))
        .env_remove("CASTPLANE_JOIN_TOKEN")
        .output()
        .expect("run castplane-agent");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--control-plane") && stderr.contains("https://"),
        "{stderr}"
    );
    assert!(stderr.contains("--token"), "{stderr}");
    assert!(!dir.path().join("agent").exists(), "it joined anyway");

    let output = Command::new(env!("CARGO_BIN_EXE_castplane-agent"))
        .args(["run", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run castplane-agent");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("castplane-agent join"), "{stderr}");
}
