//! What the packages ship: generated man pages and completions, the hand-written helper pages, the Homebrew
//! formula, the Debian control file, the Dockerfile and the CronJob. Installing the .deb is `make
//! deb-check`'s job in CI: a test never installs packages.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use regkit_e2e::bins;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn regkit(args: &[&str]) -> std::process::Output {
    let output = Command::new(bins::ours("regkit"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "regkit {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Renders a man page with warnings on; any warning (bad macro, unknown escape) fails.
fn assert_renders_cleanly(page: &Path) {
    let man = bins::tool("man", "man-db");
    let output = Command::new(man)
        .args(["--warnings", "-l"])
        .arg(page)
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", page.display());
    assert!(
        output.stderr.is_empty(),
        "{}: {}",
        page.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stdout.len() > 200,
        "{} renders empty",
        page.display()
    );
}

/// The binaries `make install` ships, from the Makefile's BINARIES line.
fn shipped_binaries() -> Vec<String> {
    let makefile = fs::read_to_string(repo_root().join("Makefile")).unwrap();
    let line = makefile
        .lines()
        .find_map(|line| line.strip_prefix("BINARIES"))
        .expect("a BINARIES line in the Makefile");
    line.trim_start_matches([' ', ':', '='])
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn man_pages_cover_every_subcommand_and_every_shipped_binary() {
    let dir = tempfile::tempdir().unwrap();
    regkit(&["generate", "man", dir.path().to_str().unwrap()]);
    let mut pages: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    pages.sort();
    for expected in [
        "regkit.1",
        "regkit-tags.1",
        "regkit-delete.1",
        "regkit-detect.1",
        "regkit-configure.1",
        "regkit-doctor.1",
        "regkit-ci-env.1",
    ] {
        assert!(
            pages.iter().any(|page| page == expected),
            "{expected} missing from {pages:?}"
        );
    }
    assert!(
        !pages.iter().any(|page| page.contains("generate")),
        "the hidden generate command got a page: {pages:?}"
    );
    for page in &pages {
        assert_renders_cleanly(&dir.path().join(page));
    }
    let main = fs::read_to_string(dir.path().join("regkit.1")).unwrap();
    assert!(
        main.contains("repo\\-implementation"),
        "global flags missing"
    );
    let configure = fs::read_to_string(dir.path().join("regkit-configure.1")).unwrap();
    assert!(configure.contains("podman\\-dir"), "{configure}");

    // Every other shipped binary (the helpers and regkit-ecr-token) has a hand-written page in packaging/man.
    for binary in shipped_binaries()
        .iter()
        .filter(|binary| binary.as_str() != "regkit")
    {
        let page = repo_root().join(format!("packaging/man/{binary}.1"));
        assert!(page.is_file(), "{} is missing", page.display());
        assert_renders_cleanly(&page);
    }
}

#[test]
fn completions_for_bash_zsh_and_fish_know_every_subcommand_and_vendor_flag() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        regkit(&[
            "generate",
            "completions",
            shell,
            dir.path().to_str().unwrap(),
        ]);
    }
    let help = String::from_utf8(regkit(&["--help"]).stdout).unwrap();
    for (file, _) in [
        ("regkit", "bash"),
        ("_regkit", "zsh"),
        ("regkit.fish", "fish"),
    ] {
        let script = fs::read_to_string(dir.path().join(file)).unwrap();
        for word in [
            "configure",
            "doctor",
            "ci-env",
            "tags",
            "delete",
            "repo-implementation",
        ] {
            assert!(script.contains(word), "{file} lacks {word}");
        }
        // Implementation flags are added at run time; the completions must come from that full definition.
        for flag in help
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .filter(|flag| flag.starts_with("--repo-"))
        {
            assert!(
                script.contains(flag.trim_start_matches('-')),
                "{file} lacks {flag}"
            );
        }
    }
    let bash = bins::tool("bash", "bash");
    let loaded = Command::new(bash)
        .arg("-c")
        .arg(format!(
            "source {} && complete -p regkit",
            dir.path().join("regkit").display()
        ))
        .output()
        .unwrap();
    assert!(
        loaded.status.success() && String::from_utf8_lossy(&loaded.stdout).contains("regkit"),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
}

#[test]
fn homebrew_formula_is_valid_ruby_and_installs_every_binary() {
    let ruby = bins::tool("ruby", "ruby");
    let formula = repo_root().join("packaging/homebrew/regkit.rb");
    let checked = Command::new(ruby).arg("-c").arg(&formula).output().unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let text = fs::read_to_string(&formula).unwrap();
    assert!(text.contains("test do"));
    let words: Vec<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '/'))
        .collect();
    for binary in shipped_binaries() {
        let dir = helper_dir(&binary);
        assert!(
            words.contains(&dir.as_str()) || words.contains(&format!("helpers/{dir}").as_str()),
            "the formula does not build {binary} (helpers/{dir})"
        );
    }
}

/// The `helpers/<dir>` whose Cargo.toml names `name` as its package or binary, or that has `src/bin/<name>.rs`.
fn helper_dir(name: &str) -> String {
    fs::read_dir(repo_root().join("helpers"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|dir| {
            dir.join(format!("src/bin/{name}.rs")).is_file()
                || fs::read_to_string(dir.join("Cargo.toml"))
                    .is_ok_and(|text| text.contains(&format!("name = \"{name}\"")))
        })
        .unwrap_or_else(|| panic!("no helpers/* crate is named {name}"))
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn debian_control_conflicts_with_and_replaces_debians_ecr_helper() {
    let control = fs::read_to_string(repo_root().join("packaging/deb/control.in")).unwrap();
    for field in ["Conflicts", "Replaces"] {
        let value = control
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{field}: ")))
            .unwrap_or_else(|| panic!("no {field} field"));
        assert!(
            value
                .split(',')
                .any(|p| p.trim() == "amazon-ecr-credential-helper"),
            "{field}: {value}"
        );
    }
    let changelog = fs::read_to_string(repo_root().join("packaging/deb/changelog")).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        changelog.starts_with(&format!("regkit ({version})")),
        "packaging/deb/changelog has no entry for {version}"
    );
}

#[test]
fn cronjob_runs_flags_regkit_cleanup_knows_and_dockerfile_builds_real_packages() {
    let text = fs::read_to_string(repo_root().join("packaging/kubernetes/cronjob.yaml")).unwrap();
    let cronjob: serde_json::Value = serde_norway::from_str(&text).unwrap();
    assert_eq!(cronjob["kind"], "CronJob");
    assert_eq!(cronjob["spec"]["concurrencyPolicy"], "Forbid");
    let container = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "cleanup");
    let help = String::from_utf8(regkit(&["cleanup", "--help"]).stdout).unwrap();
    for flag in args.iter().filter(|arg| arg.starts_with("--")) {
        let name = flag.split('=').next().unwrap();
        assert!(help.contains(name), "regkit cleanup has no {name}");
    }
    assert_eq!(
        container["volumeMounts"][0]["mountPath"], "/docker-config",
        "the secret must be mounted where the image's DOCKER_CONFIG points"
    );

    let dockerfile = fs::read_to_string(repo_root().join("packaging/docker/Dockerfile")).unwrap();
    assert!(dockerfile.contains("ENV DOCKER_CONFIG=/docker-config"));
    for package in dockerfile
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|pair| pair[0] == "-p")
        .map(|pair| pair[1])
    {
        helper_dir(package);
    }
}
