//! `regkit configure`: routes registries to a credential helper in docker's `config.json` and, with
//! `--podman`, in a `registries.conf.d` drop-in that podman, skopeo and buildah read.

use std::fs;
use std::path::{Path, PathBuf};

use clap::Args;
use regkit::dockerconfig::{AuthMap, CONTAINERS_HUB_KEY, ConfigDocument, INDEX_SERVER};
use regkit::dockerconfig::{NewFileMode, hostname, is_docker_hub, registry_key, write_atomically};
use serde_json::{Map, Value};

use super::Fatal;

/// The drop-in's file name: late enough to override distribution defaults, early enough for local files.
const DROP_IN: &str = "50-regkit.conf";

/// c/image's name for "the auth files", kept in the list so `podman login` entries still resolve.
const AUTH_FILE_HELPER: &str = "containers-auth.json";

/// Keys of an `auths` entry that hold secrets; redacted in `--dry-run` diffs.
const SECRET_FIELDS: [&str; 4] = ["auth", "password", "identitytoken", "registrytoken"];

#[derive(Args)]
pub(crate) struct ConfigureArgs {
    /// Registry host to route to the helper (repeatable). Docker Hub gets both of its keys.
    #[arg(long = "registry", value_name = "HOST")]
    registries: Vec<String>,
    /// Helper to use, docker-credential-NAME [default: ecr-login for ECR hosts, else keyring].
    #[arg(long, value_name = "NAME")]
    helper: Option<String>,
    /// Also write podman's credential-helpers list into a registries.conf.d drop-in.
    #[arg(long)]
    podman: bool,
    /// The registries.conf.d directory for --podman [default: ~/.config/containers/registries.conf.d].
    #[arg(long, value_name = "DIR", requires = "podman")]
    podman_dir: Option<PathBuf>,
    /// Send every registry to docker-credential-regkit, which routes each one itself: docker's credsStore
    /// and the podman drop-in.
    #[arg(long, conflicts_with_all = ["registries", "helper"])]
    router: bool,
}

/// One `credHelpers` entry to write.
struct Route {
    host: String,
    key: String,
    helper: String,
}

/// Runs `regkit configure` on the docker config directory `dir`; `dry_run` prints diffs instead of writing.
pub(crate) fn run(args: &ConfigureArgs, dir: &Path, dry_run: bool) -> Result<u8, Fatal> {
    if args.router {
        return configure_router(args, dir, dry_run);
    }
    if args.registries.is_empty() && !args.podman {
        return Err(Fatal::Usage(
            "nothing to configure: name a registry with --registry HOST, or use --podman".into(),
        ));
    }
    let chosen = args.helper.as_deref().map(validate_helper).transpose()?;
    let routes = routes(&args.registries, chosen)?;
    let mut helpers: Vec<&str> = routes.iter().map(|route| route.helper.as_str()).collect();
    if helpers.is_empty() {
        helpers.push(chosen.unwrap_or("keyring"));
    }
    helpers.dedup();
    for helper in &helpers {
        if !on_path(&format!("docker-credential-{helper}")) {
            eprintln!(
                "regkit: warning: docker-credential-{helper} is not on PATH; docker will fail until it is installed"
            );
        }
    }
    if !routes.is_empty() {
        configure_docker(&routes, None, dir, dry_run)?;
        warn_about_shadows(&routes, dir)?;
    }
    if args.podman {
        let podman_dir = match &args.podman_dir {
            Some(dir) => dir.clone(),
            None => default_podman_dir()?,
        };
        configure_podman(&helpers, &podman_dir, dry_run)?;
    }
    Ok(regkit::report::EXIT_OK)
}

/// The `credHelpers` entries for `registries`: `chosen` for all of them, else each host's default helper.
fn routes(registries: &[String], chosen: Option<&str>) -> Result<Vec<Route>, Fatal> {
    let mut routes = Vec::new();
    for registry in registries {
        let host = hostname(registry).to_ascii_lowercase();
        if host.is_empty() {
            return Err(Fatal::Usage(format!(
                "--registry {registry:?} names no host: give host[:port], e.g. ghcr.io or localhost:5000"
            )));
        }
        let helper = chosen.unwrap_or_else(|| default_helper(&host)).to_string();
        // docker asks helpers for Hub under its legacy URL; podman and skopeo, reading the same file, under
        // docker.io.
        let keys = if is_docker_hub(&host) {
            vec![INDEX_SERVER.to_string(), CONTAINERS_HUB_KEY.to_string()]
        } else {
            vec![registry_key(&host)]
        };
        for key in keys {
            if !routes.iter().any(|route: &Route| route.key == key) {
                routes.push(Route {
                    host: host.clone(),
                    key,
                    helper: helper.clone(),
                });
            }
        }
    }
    Ok(routes)
}

fn default_helper(host: &str) -> &'static str {
    match regkit::implementation::detect(host, None) {
        Ok(detection) if detection.name == "ecr" => "ecr-login",
        _ => "keyring",
    }
}

/// The helper's short name (a `docker-credential-` prefix is accepted and dropped).
fn validate_helper(helper: &str) -> Result<&str, Fatal> {
    let helper = helper.strip_prefix("docker-credential-").unwrap_or(helper);
    let valid = !helper.is_empty()
        && helper
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(helper)
    } else {
        Err(Fatal::Usage(format!(
            "--helper {helper:?} is not a helper name: give the part after docker-credential-, e.g. keyring"
        )))
    }
}

fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(binary).is_file()))
}

/// `--router`: docker's `credsStore` and podman's helper list both name the router.
fn configure_router(args: &ConfigureArgs, dir: &Path, dry_run: bool) -> Result<u8, Fatal> {
    const ROUTER: &str = "regkit";
    if !on_path("docker-credential-regkit") {
        eprintln!(
            "regkit: warning: docker-credential-regkit is not on PATH; docker will fail until it is installed"
        );
    }
    configure_docker(&[], Some(ROUTER), dir, dry_run)?;
    let podman_dir = match &args.podman_dir {
        Some(dir) => dir.clone(),
        None => default_podman_dir()?,
    };
    configure_podman(&[ROUTER], &podman_dir, dry_run)?;
    Ok(regkit::report::EXIT_OK)
}

fn configure_docker(
    routes: &[Route],
    creds_store: Option<&str>,
    dir: &Path,
    dry_run: bool,
) -> Result<(), Fatal> {
    let mut document =
        ConfigDocument::load(dir).map_err(|error| Fatal::Usage(error.to_string()))?;
    let before = document.root().clone();
    for route in routes {
        document.set_cred_helper(&route.key, &route.helper);
    }
    if creds_store.is_some() {
        document.set_creds_store(creds_store);
    }
    let path = document.path().display().to_string();
    if *document.root() == before {
        println!("{path}: already up to date");
        return Ok(());
    }
    if dry_run {
        print_diff(
            &path,
            &pretty(&redacted(&before)),
            &pretty(&redacted(document.root())),
        );
        return Ok(());
    }
    document
        .save()
        .map_err(|error| Fatal::Io(error.to_string()))?;
    for route in routes {
        println!("{path}: credHelpers[{:?}] = {:?}", route.key, route.helper);
    }
    if let Some(store) = creds_store {
        println!("{path}: credsStore = {store:?}");
    }
    Ok(())
}

/// Credentials stored elsewhere for a configured host, which some client would use instead of the helper.
fn warn_about_shadows(routes: &[Route], dir: &Path) -> Result<(), Fatal> {
    let document = ConfigDocument::load(dir).map_err(|error| Fatal::Usage(error.to_string()))?;
    let config_auths = auths_map(&Value::Object(document.root().clone())).map_err(|()| {
        Fatal::Usage(format!(
            "malformed auths in {}; fix or remove it",
            document.path().display()
        ))
    })?;
    let env_auths = match std::env::var("DOCKER_AUTH_CONFIG")
        .ok()
        .filter(|text| !text.trim().is_empty())
    {
        Some(text) => {
            Some(AuthMap::parse_env(&text).map_err(|error| Fatal::Usage(error.to_string()))?)
        }
        None => None,
    };
    let containers = containers_auth_file()
        .map(|path| match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str::<Value>(&text)
                .map_err(|_| ())
                .and_then(|value| auths_map(&value))
                .map(|auths| Some((path.clone(), auths)))
                .map_err(|()| {
                    Fatal::Usage(format!(
                        "malformed containers auth file {}; fix or remove it",
                        path.display()
                    ))
                }),
            Err(_) => Ok(None),
        })
        .transpose()?
        .flatten();
    let mut hosts: Vec<(&str, &str)> = routes
        .iter()
        .map(|route| (route.host.as_str(), route.helper.as_str()))
        .collect();
    hosts.dedup();
    for (host, helper) in hosts {
        if config_auths.get(host).is_some() {
            eprintln!(
                "regkit: warning: {} still holds a stored credential for {host} in auths: tools that read auths directly (and regkit, when docker-credential-{helper} has no entry) use it instead of the helper; remove that entry",
                document.path().display()
            );
        }
        if env_auths
            .as_ref()
            .is_some_and(|auths| auths.get(host).is_some())
        {
            eprintln!(
                "regkit: warning: DOCKER_AUTH_CONFIG has credentials for {host}: docker (28.3 and later) and regkit use them before docker-credential-{helper}; unset it to use the helper"
            );
        }
        if let Some((path, auths)) = &containers
            && auths.get(host).is_some()
        {
            eprintln!(
                "regkit: warning: {} has credentials for {host}: podman and skopeo use them before docker's config; run `podman logout {host}` to use docker-credential-{helper}",
                path.display()
            );
        }
    }
    Ok(())
}

/// The `auths` of a parsed docker-style document; `Err` when it is not one.
fn auths_map(document: &Value) -> Result<AuthMap, ()> {
    let Some(auths) = document.get("auths") else {
        return Ok(AuthMap::default());
    };
    let text = serde_json::json!({ "auths": auths }).to_string();
    AuthMap::parse_env(&text).map_err(|_| ())
}

/// The containers auth file podman and skopeo read first, as `regkit::dockerconfig` resolves it.
fn containers_auth_file() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    var("REGISTRY_AUTH_FILE").map(PathBuf::from).or_else(|| {
        var("XDG_RUNTIME_DIR").map(|dir| PathBuf::from(dir).join("containers").join("auth.json"))
    })
}

/// c/image reads `~/.config/containers/registries.conf.d` for every user, root included, next to the
/// system directory, and does not consult `XDG_CONFIG_HOME` for it.
fn default_podman_dir() -> Result<PathBuf, Fatal> {
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(|home| {
            PathBuf::from(home)
                .join(".config")
                .join("containers")
                .join("registries.conf.d")
        })
        .ok_or_else(|| {
            Fatal::Usage(
                "cannot find the registries.conf.d directory: set HOME or --podman-dir".into(),
            )
        })
}

fn configure_podman(helpers: &[&str], dir: &Path, dry_run: bool) -> Result<(), Fatal> {
    let path = dir.join(DROP_IN);
    let list: Vec<String> = helpers
        .iter()
        .copied()
        .chain([AUTH_FILE_HELPER])
        .map(|name| format!("{name:?}"))
        .collect();
    let content = format!(
        "# Written by `regkit configure --podman`. podman, skopeo and buildah ask these credential helpers in\n# order; {AUTH_FILE_HELPER} keeps the entries `podman login` stored in auth files.\ncredential-helpers = [{}]\n",
        list.join(", ")
    );
    let before = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => {
            return Err(Fatal::Usage(format!(
                "cannot read {}: {error}",
                path.display()
            )));
        }
    };
    let shown = path.display().to_string();
    if before == content {
        println!("{shown}: already up to date");
        return Ok(());
    }
    if dry_run {
        print_diff(&shown, &before, &content);
        return Ok(());
    }
    // Written whole or not at all, so podman never reads half a file; other users' podman reads it too.
    write_atomically(&path, content.as_bytes(), NewFileMode::Shared)
        .map_err(|error| Fatal::Io(error.to_string()))?;
    println!("{shown}: credential-helpers = [{}]", list.join(", "));
    Ok(())
}

/// The document with every secret-bearing `auths` field replaced, so a diff can be shown on a terminal.
fn redacted(root: &Map<String, Value>) -> Map<String, Value> {
    let mut root = root.clone();
    if let Some(Value::Object(auths)) = root.get_mut("auths") {
        for entry in auths.values_mut() {
            if let Value::Object(fields) = entry {
                for (name, value) in fields.iter_mut() {
                    if SECRET_FIELDS.contains(&name.as_str()) && value.is_string() {
                        *value = Value::String("<redacted>".into());
                    }
                }
            }
        }
    }
    root
}

fn pretty(root: &Map<String, Value>) -> String {
    if root.is_empty() {
        return String::new();
    }
    let mut text = serde_json::to_string_pretty(root).unwrap_or_default();
    text.push('\n');
    text
}

fn print_diff(path: &str, before: &str, after: &str) {
    let diff = similar::TextDiff::from_lines(before, after);
    print!(
        "{}",
        diff.unified_diff().context_radius(3).header(
            &format!("{path} (current)"),
            &format!("{path} (after configure)")
        )
    );
    println!("(dry run: nothing written)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_gets_both_keys_and_ecr_hosts_get_ecr_login() {
        let registries = [
            "docker.io",
            "https://index.docker.io/v1/",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "Ghcr.io",
        ]
        .map(String::from);
        let routes = routes(&registries, None).unwrap();
        let pairs: Vec<(&str, &str)> = routes
            .iter()
            .map(|route| (route.key.as_str(), route.helper.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                (INDEX_SERVER, "keyring"),
                ("docker.io", "keyring"),
                ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "ecr-login"),
                ("ghcr.io", "keyring"),
            ]
        );
    }

    #[test]
    fn helper_names_are_validated() {
        assert_eq!(validate_helper("keyring").ok(), Some("keyring"));
        assert_eq!(
            validate_helper("docker-credential-ecr-login").ok(),
            Some("ecr-login")
        );
        for bad in ["", "../x", "a b", "docker-credential-"] {
            assert!(validate_helper(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secrets_are_redacted_from_diffs() {
        let root: Map<String, Value> = serde_json::from_str(
            r#"{"auths":{"a.test":{"auth":"canary","email":"e"}},"psFormat":"canary-kept"}"#,
        )
        .unwrap();
        let text = pretty(&redacted(&root));
        assert!(!text.contains("\"canary\""), "{text}");
        assert!(
            text.contains("<redacted>") && text.contains("canary-kept"),
            "{text}"
        );
    }
}
