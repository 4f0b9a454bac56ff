//! `doppel completions <shell>`: the scripts name the subcommands, and bash reads its script.

mod common;

use common::doppel_command;

fn script(shell: &str) -> String {
    let output = doppel_command()
        .args(["completions", shell])
        .output()
        .expect("run doppel completions");
    common::cli_succeeded(output, &["completions", shell])
}

#[test]
fn each_shell_gets_a_script_naming_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let script = script(shell);
        // Options are spelled differently per shell (fish writes `-l json`), subcommands not.
        for word in ["twin", "command", "credential", "events", "json"] {
            assert!(script.contains(word), "{shell}: no {word} in its script");
        }
    }
    let unknown = doppel_command()
        .args(["completions", "tcsh"])
        .output()
        .expect("run doppel completions");
    assert_eq!(unknown.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("invalid value 'tcsh'"), "{stderr}");
}

#[test]
fn bash_sources_its_script_and_completes_a_subcommand() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("doppel.bash");
    std::fs::write(&file, script("bash")).expect("write the script");
    // Sourced, then asked what follows `doppel tw`, as bash asks on Tab.
    let check = "source \"$1\" && COMP_WORDS=(doppel tw) && COMP_CWORD=1 \
                 && _doppel doppel tw doppel && echo \"${COMPREPLY[@]}\"";
    let output = std::process::Command::new("bash")
        .args(["--norc", "-c", check, "bash"])
        .arg(&file)
        .output()
        .expect("bash runs (it is part of the test image)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bash: {stderr}");
    assert!(stderr.is_empty(), "bash complained: {stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "twin");
}
