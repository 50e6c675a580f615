//! The `castplane-control` binary refuses settings out of range before it binds or opens
//! anything: exit status 2, every problem named at once.

use std::process::Command;

#[test]
fn out_of_range_settings_exit_2_naming_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_castplane-control"))
        .arg("--data-dir")
        .arg(dir.path().join("never-created"))
        .args(["--action-deadline-seconds", &u64::MAX.to_string()])
        .args([
            "--agent-certificate-validity-seconds",
            &(1u64 << 62).to_string(),
        ])
        .args(["--listen", "127.0.0.1:0", "--agent-listen", "127.0.0.1:1"])
        .env_remove("CASTPLANE_CONFIG")
        .output()
        .expect("run castplane-control");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for setting in [
        "action_deadline_seconds",
        "agent_certificate_validity_seconds",
    ] {
        assert!(
            stderr.contains(setting) && stderr.contains("must be between"),
            "{setting} not named:\n{stderr}"
        );
    }
    assert!(
        !dir.path().join("never-created").exists(),
        "it started anyway"
    );
}
