//! `regkit configure`: routes registries to a credential helper in docker's `config.json` and, with
//! `--podman`, in a `registries.conf.d` drop-in that podman, skopeo and buildah read.

use std::path::{Path, PathBuf};

use clap::Args;
use regkit::dockerconfig::routes::{self, ConfigEdit, DropIn, Route, ShadowSource};

use super::Fatal;

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

/// How `configure` reports: `dry_run` prints diffs instead of writing; `quiet` drops the lines that say
/// what changed (warnings and diffs stay).
#[derive(Clone, Copy)]
pub(crate) struct Mode {
    pub(crate) dry_run: bool,
    pub(crate) quiet: bool,
}

impl Mode {
    fn say(self, line: String) {
        if !self.quiet {
            println!("{line}");
        }
    }
}

/// Runs `regkit configure` on the docker config directory `dir`.
pub(crate) fn run(args: &ConfigureArgs, dir: &Path, mode: Mode) -> Result<u8, Fatal> {
    if args.router {
        return configure_router(args, dir, mode);
    }
    if args.registries.is_empty() && !args.podman {
        return Err(Fatal::Usage(
            "nothing to configure: name a registry with --registry HOST, or use --podman".into(),
        ));
    }
    let chosen = args
        .helper
        .as_deref()
        .map(routes::helper_name)
        .transpose()?;
    let routes = routes::routes(&args.registries, chosen)?;
    let helpers = routes::helpers(&routes, chosen);
    for helper in &helpers {
        warn_unless_on_path(helper);
    }
    if !routes.is_empty() {
        configure_docker(&routes, None, dir, mode)?;
        warn_about_shadows(&routes, dir)?;
    }
    if args.podman {
        configure_podman(args, &helpers, mode)?;
    }
    Ok(regkit::report::EXIT_OK)
}

fn warn_unless_on_path(helper: &str) {
    let binary = format!("docker-credential-{helper}");
    let on_path = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(&binary).is_file()));
    if !on_path {
        eprintln!(
            "regkit: warning: {binary} is not on PATH; docker will fail until it is installed"
        );
    }
}

/// `--router`: docker's `credsStore` and podman's helper list both name the router.
fn configure_router(args: &ConfigureArgs, dir: &Path, mode: Mode) -> Result<u8, Fatal> {
    const ROUTER: &str = "regkit";
    warn_unless_on_path(ROUTER);
    configure_docker(&[], Some(ROUTER), dir, mode)?;
    configure_podman(args, &[ROUTER], mode)?;
    Ok(regkit::report::EXIT_OK)
}

fn configure_docker(
    routes: &[Route],
    creds_store: Option<&str>,
    dir: &Path,
    mode: Mode,
) -> Result<(), Fatal> {
    let edit = ConfigEdit::new(dir, routes, creds_store)?;
    let path = edit.path().display().to_string();
    if !edit.changes() {
        mode.say(format!("{path}: already up to date"));
        return Ok(());
    }
    if mode.dry_run {
        let (before, after) = edit.redacted_texts();
        print_diff(&path, &before, &after);
        return Ok(());
    }
    edit.save()?;
    for route in routes {
        mode.say(format!(
            "{path}: credHelpers[{:?}] = {:?}",
            route.key, route.helper
        ));
    }
    if let Some(store) = creds_store {
        mode.say(format!("{path}: credsStore = {store:?}"));
    }
    Ok(())
}

fn warn_about_shadows(routes: &[Route], dir: &Path) -> Result<(), Fatal> {
    for shadow in routes::shadows(routes, dir, &|name| std::env::var_os(name))? {
        let (host, helper) = (&shadow.host, &shadow.helper);
        match &shadow.source {
            ShadowSource::ConfigAuths(path) => eprintln!(
                "regkit: warning: {} still holds a stored credential for {host} in auths: tools that read auths directly (and regkit, when docker-credential-{helper} has no entry) use it instead of the helper; remove that entry",
                path.display()
            ),
            ShadowSource::Environment => eprintln!(
                "regkit: warning: DOCKER_AUTH_CONFIG has credentials for {host}: docker (28.3 and later) and regkit use them before docker-credential-{helper}; unset it to use the helper"
            ),
            ShadowSource::ContainersFile(path) => eprintln!(
                "regkit: warning: {} has credentials for {host}: podman and skopeo use them before docker's config; run `podman logout {host}` to use docker-credential-{helper}",
                path.display()
            ),
        }
    }
    Ok(())
}

fn configure_podman(args: &ConfigureArgs, helpers: &[&str], mode: Mode) -> Result<(), Fatal> {
    let dir = match &args.podman_dir {
        Some(dir) => dir.clone(),
        None => routes::default_podman_dir(&|name| std::env::var_os(name))?,
    };
    let drop_in = DropIn::new(&dir, helpers)?;
    let shown = drop_in.path().display().to_string();
    if !drop_in.changes() {
        mode.say(format!("{shown}: already up to date"));
        return Ok(());
    }
    if mode.dry_run {
        print_diff(&shown, drop_in.current(), drop_in.content());
        return Ok(());
    }
    drop_in.save()?;
    mode.say(format!(
        "{shown}: credential-helpers = [{}]",
        drop_in.helper_list()
    ));
    Ok(())
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
