//! The `runplane` binary without a daemon: usage errors, missing daemon, generated
//! completions and man pages.

use assert_cmd::Command;
use predicates::prelude::*;

fn runplane() -> Command {
    let mut c = Command::cargo_bin("runplane").unwrap();
    c.env_remove("RUNPLANE_SOCKET");
    c
}

#[test]
fn usage_errors_exit_100_and_help_exits_0() {
    runplane()
        .arg("frobnicate")
        .assert()
        .code(100)
        .stderr(predicate::str::contains("unrecognized subcommand"));
    runplane()
        .args(["status", "--timeout", "0"])
        .assert()
        .code(100)
        .stderr(predicate::str::contains("--timeout must be a positive"));
    runplane()
        .arg("--help")
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Exit codes: 0 success"));
    runplane()
        .arg("--version")
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with("runplane "));
}

#[test]
fn no_daemon_is_a_system_failure_naming_the_socket() {
    let t = tempfile::tempdir().unwrap();
    let sock = t.path().join("nothing-here");
    for verb in ["status", "ping", "reload"] {
        runplane()
            .args(["--socket", sock.to_str().unwrap(), verb, "--json"])
            .assert()
            .code(111)
            .stdout("")
            .stderr(predicate::str::starts_with(format!(
                "runplane: fatal: unable to connect to {}",
                sock.display()
            )));
    }
    // RUNPLANE_SOCKET is honoured.
    runplane()
        .env("RUNPLANE_SOCKET", sock.to_str().unwrap())
        .arg("ping")
        .assert()
        .code(111)
        .stderr(predicate::str::contains(sock.to_str().unwrap()));
}

#[test]
fn completions_and_man_pages_are_generated_from_the_definition() {
    for (shell, marker) in [
        ("bash", "_runplane()"),
        ("zsh", "#compdef runplane"),
        ("fish", "complete -c runplane"),
    ] {
        runplane()
            .args(["generate", "completions", shell])
            .assert()
            .success()
            .stdout(predicate::str::contains(marker));
    }
    let t = tempfile::tempdir().unwrap();
    runplane()
        .args(["generate", "man", t.path().to_str().unwrap()])
        .assert()
        .success();
    let mut pages: Vec<String> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    pages.sort();
    assert_eq!(
        pages,
        [
            "runplane-generate.1",
            "runplane-linger.1",
            "runplane-ping.1",
            "runplane-reload.1",
            "runplane-session.1",
            "runplane-status.1",
            "runplane.1"
        ]
    );
    let status = std::fs::read_to_string(t.path().join("runplane-status.1")).unwrap();
    assert!(
        status.contains(".TH RUNPLANE-STATUS 1") && status.contains("\\-\\-json"),
        "{status}"
    );
}
