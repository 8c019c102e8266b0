//! Build metadata for `bitaxe_exporter_build_info`: the git commit the binary was built
//! from (or `unknown` outside a checkout, as in a Docker build context without `.git`) and
//! the rustc version.

use std::process::Command;

fn main() {
    let output = |program: &str, args: &[&str]| -> Option<String> {
        let out = Command::new(program).args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        let text = text.trim();
        (out.status.success() && !text.is_empty()).then(|| text.to_string())
    };
    // A Docker build has no .git: its Dockerfile passes the commit in the environment.
    let given = std::env::var("BITAXE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty() && c != "unknown");
    let commit = given
        .or_else(|| output("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BITAXE_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=BITAXE_RUSTC_VERSION={rustc_version}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BITAXE_GIT_COMMIT");
}
