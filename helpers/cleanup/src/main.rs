//! `regkit`: list and delete registry tags; deleting a tag never removes another tag.

mod cienv;
mod cleanup;
mod configure;
mod doctor;
mod generate;
mod inuse;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::BoolishValueParser;
use clap::{Arg, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use regkit::dockerconfig::DockerConfig;
use regkit::dockerconfig::private::PrivateDirError;
use regkit::dockerconfig::routes::RoutesError;
use regkit::implementation::{self, DeleteRemoves, DeleteRequest, Journaling, Settings};
use regkit::journal::{Journal, Location};
use regkit::reference::{Reference, Repository, Target};
use regkit::registry::{ClientOptions, RegistryError, failure_kind, strip_url_scheme};
use regkit::report::{self, EXIT_CODES_HELP, EXIT_FAILED, EXIT_USAGE, TagRow};
use regkit::session::{Connection, Observer, Session, SessionOptions};
use regkit::undo::Restore;

#[derive(Parser)]
#[command(
    name = "regkit",
    version,
    about = "List and delete registry tags; deleting a tag never removes another tag",
    after_help = EXIT_CODES_HELP
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    // Accepted before the subcommand too (`regkit --output json tags …`), as they always were; each
    // subcommand's --help lists only those it honours.
    #[command(
        flatten,
        next_help_heading = "Registry options (tags, delete, cleanup, undo, detect, doctor)"
    )]
    registry: RegistryArgs,
    #[command(
        flatten,
        next_help_heading = "Pace options (tags, delete, cleanup, undo)"
    )]
    pace: PaceArgs,
    #[command(
        flatten,
        next_help_heading = "Output options (all but configure and ci-env)"
    )]
    format: FormatArgs,
    #[command(
        flatten,
        next_help_heading = "Dry run (delete, cleanup, undo, configure)"
    )]
    dry: DryRunArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the tags of a repository.
    Tags {
        /// Repository, e.g. registry.example.com/team/app.
        repository: String,
        /// Show each tag's manifest digest (one HEAD per tag).
        #[arg(long)]
        digests: bool,
        /// Show each image with its signatures, attestations, SBOMs and other referrers beneath it
        /// (artifact type, digest, tag), recursively: what a cleanup takes with the image. Reads each
        /// manifest once.
        #[arg(long)]
        tree: bool,
        #[command(flatten)]
        registry: RegistryArgs,
        #[command(flatten)]
        pace: PaceArgs,
        #[command(flatten)]
        format: FormatArgs,
    },
    /// Delete tags (repo:tag) or manifests (repo@sha256:…); other tags on the same image survive.
    Delete {
        /// References to delete; a digest removes its manifest, every tag on it, and its referrers
        /// (signatures, attestations, SBOMs; untagged ones too where the registry serves the OCI 1.1
        /// referrers API).
        #[arg(required_unless_present = "stdin")]
        references: Vec<String>,
        /// Also read references from standard input, one per line (blank lines and # comments ignored).
        #[arg(long)]
        stdin: bool,
        /// Keep the signatures, attestations, SBOMs and other referrers of a manifest deleted by digest
        /// (by default they go with it, recursively).
        #[arg(long)]
        keep_referrers: bool,
        #[command(flatten)]
        journal: JournalArgs,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Delete the tags a policy selects in one or more repositories; kept tags never lose their image, and
    /// images that Kubernetes workloads (every kubeconfig context) or --keep-images use are kept.
    ///
    /// Precedence: a tag kept by any keep rule is kept (in use, a referrer of a kept image, --match it
    /// fails, --exclude, --keep-list, --keep-git, --per-git-ref, --keep-last per --group-by group, the
    /// --grace window; and always a kept index's children); only then do the delete rules (--older-than,
    /// --unpulled-for) select. Policies can be named in regkit's config file ([[cleanup.policy]], --policy
    /// NAME).
    Cleanup {
        #[command(flatten)]
        args: Box<cleanup::CleanupArgs>,
        #[command(flatten)]
        journal: JournalArgs,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Put back what a delete or cleanup run removed, from its undo journal: each manifest pushed again
    /// (children before their index, subjects before their referrers) and each tag re-pointed. A tag
    /// pushed again since is left alone (conflict); a manifest whose blobs the registry has
    /// garbage-collected is lost.
    Undo {
        /// The run's journal (see `regkit journal list`).
        #[arg(value_name = "JOURNAL", required_unless_present = "last")]
        file: Option<PathBuf>,
        /// The newest journal in $XDG_STATE_HOME/regkit/journal/.
        #[arg(long, conflicts_with = "file")]
        last: bool,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// The undo journals of past delete and cleanup runs.
    #[command(subcommand)]
    Journal(JournalCommand),
    /// Print the images Kubernetes workloads and --keep-images use, which cleanup keeps (reference, where
    /// from); changes nothing.
    InUse {
        #[command(flatten)]
        args: inuse::InUseArgs,
        #[command(flatten)]
        format: FormatArgs,
    },
    /// Show which implementation and credentials would be used for a repository.
    Detect {
        /// Repository, e.g. registry.example.com/team/app.
        repository: String,
        #[command(flatten)]
        registry: RegistryArgs,
        #[command(flatten)]
        format: FormatArgs,
    },
    /// Route registries to a credential helper in docker's config.json (and podman's, with --podman).
    Configure {
        #[command(flatten)]
        args: configure::ConfigureArgs,
        #[command(flatten)]
        dry: DryRunArgs,
    },
    /// Check what regkit would use for a repository and whether listing and deleting would work; changes
    /// nothing.
    Doctor {
        /// Repository, e.g. registry.example.com/team/app.
        repository: String,
        #[command(flatten)]
        registry: RegistryArgs,
        #[command(flatten)]
        format: FormatArgs,
    },
    /// Make a private docker config directory for one CI job and print the variables that select it.
    CiEnv(cienv::CiEnvArgs),
    /// Write man pages or shell completions (for packaging).
    #[command(subcommand, hide = true)]
    Generate(generate::Generate),
}

/// `regkit journal …`.
#[derive(Subcommand)]
enum JournalCommand {
    /// List the journals in $XDG_STATE_HOME/regkit/journal/ (time, command, registries, counts), oldest
    /// first, after removing those older than --keep-journals.
    List {
        #[command(flatten)]
        keep: KeepJournals,
        #[command(flatten)]
        format: FormatArgs,
    },
}

/// The subcommands that reach registries, which take the registry options and the vendor flags.
const REGISTRY_COMMANDS: [&str; 6] = ["tags", "delete", "cleanup", "undo", "detect", "doctor"];

/// The wording of `--output` and `--dry-run` where their generic help would not say what they do.
const SCOPED_HELP: [(&str, &str, &str); 9] = [
    (
        "tags",
        "output",
        "Output format: text, or json (one object per tag; with --tree, per image and referrer) [default: text]",
    ),
    (
        "delete",
        "output",
        "Output format: text, or json (one object per reference, then a summary) [default: text]",
    ),
    (
        "cleanup",
        "output",
        "Output format: text, or json (one object per tag, then a summary) [default: text]",
    ),
    (
        "in-use",
        "output",
        "Output format: text, or json (one object per image in use) [default: text]",
    ),
    (
        "delete",
        "dry_run",
        "Change nothing: report what would be deleted, with the exit code the real run would give",
    ),
    (
        "cleanup",
        "dry_run",
        "Change nothing: report what would be deleted and what is kept, with the exit code the real run would give",
    ),
    (
        "undo",
        "output",
        "Output format: text, or json (one object per journal line, then a summary) [default: text]",
    ),
    (
        "undo",
        "dry_run",
        "Change nothing: report what undo would push, conflicts and what is already in place included",
    ),
    (
        "configure",
        "dry_run",
        "Change nothing: print the diff configure would write to each file",
    ),
];

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// Options every subcommand honours, wherever they are given.
#[derive(Args)]
struct Common {
    /// Docker config directory [also WERF_DOCKER_CONFIG; default: DOCKER_CONFIG, then ~/.docker].
    #[arg(long, global = true, env = "REGKIT_DOCKER_CONFIG", value_name = "DIR")]
    docker_config: Option<PathBuf>,
    /// Explain choices (implementation, credential source, retries) on stderr.
    #[arg(short, long, global = true, env = "REGKIT_VERBOSE", value_parser = BoolishValueParser::new())]
    verbose: bool,
    /// Print only errors (JSON output is still printed).
    #[arg(short, long, global = true, env = "REGKIT_QUIET", value_parser = BoolishValueParser::new(),
          conflicts_with = "verbose")]
    quiet: bool,
}

/// How to reach a registry.
#[derive(Args, Clone, Default)]
struct RegistryArgs {
    // Built, not written: the names come from the implementation specs.
    #[arg(
        long,
        visible_alias = "repo-container-registry",
        env = "REGKIT_REPO_IMPLEMENTATION",
        value_name = "NAME",
        help = format!(
            "Registry implementation instead of detecting it from the host ({}) [also REGKIT_REPO_CONTAINER_REGISTRY, WERF_REPO_IMPLEMENTATION, WERF_REPO_CONTAINER_REGISTRY]",
            implementation::name_list()
        )
    )]
    repo_implementation: Option<String>,
    /// Allow plain HTTP to non-loopback registries [also WERF_INSECURE_REGISTRY].
    #[arg(long, env = "REGKIT_INSECURE_REGISTRY", value_parser = BoolishValueParser::new())]
    insecure_registry: bool,
    /// Accept any TLS certificate [also WERF_SKIP_TLS_VERIFY_REGISTRY].
    #[arg(long, env = "REGKIT_SKIP_TLS_VERIFY_REGISTRY", value_parser = BoolishValueParser::new())]
    skip_tls_verify_registry: bool,
    /// Also trust the CA certificates of this PEM bundle (the system roots and SSL_CERT_FILE still apply).
    #[arg(long, env = "REGKIT_CA_FILE", value_name = "PEM")]
    ca_file: Option<PathBuf>,
}

/// How fast and how long the many requests of a listing or a deletion may go.
#[derive(Args, Clone, Default)]
struct PaceArgs {
    /// Concurrent requests to each registry (or API) host, however many repositories are listed or
    /// deleted from at once [default: 8].
    #[arg(long, env = "REGKIT_PARALLEL", value_name = "PARALLEL",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    parallel: Option<u16>,
    /// At most N requests per second to each host (default: no cap; rate limits the registry announces are
    /// always obeyed, and GitHub DELETEs go about one per second).
    #[arg(long, env = "REGKIT_MAX_RPS", value_name = "N", value_parser = parse_rate)]
    max_rps: Option<f64>,
    /// Overall bound on the run (30m, 2h): rate-limit waits may last up to it; once it passes nothing more is
    /// attempted, every finished row is reported and a rerun continues.
    #[arg(long, env = "REGKIT_TIMEOUT", value_name = "DURATION",
          value_parser = cleanup::parse_duration)]
    timeout: Option<u64>,
}

#[derive(Args, Clone, Default)]
struct FormatArgs {
    /// Output format: text, or json (one object per line) [default: text].
    #[arg(long, env = "REGKIT_OUTPUT", value_enum)]
    output: Option<Output>,
}

/// The option groups of the commands that change a registry: delete, cleanup, undo.
#[derive(Args, Clone, Default)]
struct ChangeArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    pace: PaceArgs,
    #[command(flatten)]
    format: FormatArgs,
    #[command(flatten)]
    dry: DryRunArgs,
}

/// Where delete and cleanup record what they remove, for `regkit undo`.
#[derive(Args, Clone, Default)]
struct JournalArgs {
    /// Write the undo journal to FILE, which must not exist [default: a new file per run in
    /// $XDG_STATE_HOME/regkit/journal/, ~/.local/state/regkit/journal/].
    #[arg(
        long,
        env = "REGKIT_JOURNAL",
        value_name = "FILE",
        conflicts_with = "no_journal"
    )]
    journal: Option<PathBuf>,
    /// Write no undo journal: what the run removes cannot be put back with `regkit undo`.
    #[arg(long, env = "REGKIT_NO_JOURNAL", value_parser = BoolishValueParser::new())]
    no_journal: bool,
    #[command(flatten)]
    keep: KeepJournals,
}

/// How long journals of the default directory are kept.
#[derive(Args, Clone, Default)]
struct KeepJournals {
    /// Remove journals of the default directory last written longer ago than this [default: 30d].
    #[arg(long, env = "REGKIT_KEEP_JOURNALS", value_name = "DURATION",
          value_parser = cleanup::parse_duration)]
    keep_journals: Option<u64>,
}

#[derive(Args, Clone, Default)]
struct DryRunArgs {
    /// Change nothing: show what delete and cleanup would delete, or the diff configure would write.
    #[arg(long, env = "REGKIT_DRY_RUN", value_parser = BoolishValueParser::new())]
    dry_run: bool,
}

/// Every option as the run sees it: the subcommand's own, else the one given before the subcommand.
struct Options {
    dry_run: bool,
    output: Output,
    parallel: u16,
    max_rps: Option<f64>,
    timeout: Option<u64>,
    docker_config: Option<PathBuf>,
    repo_implementation: Option<String>,
    insecure_registry: bool,
    skip_tls_verify_registry: bool,
    ca_file: Option<PathBuf>,
    verbose: bool,
    quiet: bool,
}

impl Options {
    fn new(cli: &Cli) -> Self {
        let none = (None, None, None, None);
        let (registry, pace, format, dry) = match &cli.command {
            Command::Tags {
                registry,
                pace,
                format,
                ..
            } => (Some(registry), Some(pace), Some(format), None),
            Command::Delete { change, .. }
            | Command::Cleanup { change, .. }
            | Command::Undo { change, .. } => (
                Some(&change.registry),
                Some(&change.pace),
                Some(&change.format),
                Some(&change.dry),
            ),
            Command::InUse { format, .. }
            | Command::Journal(JournalCommand::List { format, .. }) => {
                (None, None, Some(format), None)
            }
            Command::Detect {
                registry, format, ..
            }
            | Command::Doctor {
                registry, format, ..
            } => (Some(registry), None, Some(format), None),
            Command::Configure { dry, .. } => (None, None, None, Some(dry)),
            Command::CiEnv(_) | Command::Generate(_) => none,
        };
        let registry = registry.cloned().unwrap_or_default();
        let pace = pace.cloned().unwrap_or_default();
        let top = &cli.registry;
        Options {
            dry_run: cli.dry.dry_run || dry.is_some_and(|dry| dry.dry_run),
            output: format
                .and_then(|format| format.output)
                .or(cli.format.output)
                .unwrap_or(Output::Text),
            parallel: pace.parallel.or(cli.pace.parallel).unwrap_or(8),
            max_rps: pace.max_rps.or(cli.pace.max_rps),
            timeout: pace.timeout.or(cli.pace.timeout),
            docker_config: cli.common.docker_config.clone(),
            repo_implementation: registry
                .repo_implementation
                .or_else(|| top.repo_implementation.clone()),
            insecure_registry: registry.insecure_registry || top.insecure_registry,
            skip_tls_verify_registry: registry.skip_tls_verify_registry
                || top.skip_tls_verify_registry,
            ca_file: registry.ca_file.or_else(|| top.ca_file.clone()),
            verbose: cli.common.verbose,
            quiet: cli.common.quiet,
        }
    }

    /// clap reads one variable per option; werf's names (and the alias's own name) are the fallbacks.
    fn apply_env_fallbacks(&mut self) {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        };
        let boolish = |name: &str| var(name).is_some_and(|value| is_true(&value));
        if self.docker_config.is_none() {
            self.docker_config = var("WERF_DOCKER_CONFIG").map(PathBuf::from);
        }
        if self.repo_implementation.is_none() {
            self.repo_implementation = [
                "REGKIT_REPO_CONTAINER_REGISTRY",
                "WERF_REPO_IMPLEMENTATION",
                "WERF_REPO_CONTAINER_REGISTRY",
            ]
            .into_iter()
            .find_map(var);
        }
        self.insecure_registry |= boolish("WERF_INSECURE_REGISTRY");
        self.skip_tls_verify_registry |= boolish("WERF_SKIP_TLS_VERIFY_REGISTRY");
    }
}

fn parse_rate(input: &str) -> Result<f64, String> {
    input
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|rate| rate.is_finite() && *rate > 0.0)
        .ok_or_else(|| {
            format!("{input:?} is not a rate: give requests per second, such as 5 or 0.5")
        })
}

fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "y" | "on" | "t"
    )
}

/// A failure that ends the run before or instead of a per-tag report.
#[derive(Debug)]
enum Fatal {
    /// Exit 2: the command line or the configuration is wrong.
    Usage(String),
    /// Exit 1: regkit could not finish its own work (write the output or the report, read an answer).
    Io(String),
    /// The exit code of the registry failure's kind.
    Registry(RegistryError),
}

impl Fatal {
    fn exit(&self) -> u8 {
        match self {
            Fatal::Usage(_) => EXIT_USAGE,
            Fatal::Io(_) => EXIT_FAILED,
            Fatal::Registry(error) => failure_kind(error).exit_code(),
        }
    }
}

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fatal::Usage(message) | Fatal::Io(message) => f.write_str(message),
            Fatal::Registry(error) => write!(f, "{error}"),
        }
    }
}

impl From<RegistryError> for Fatal {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::Config(message) => Fatal::Usage(message),
            other => Fatal::Registry(other),
        }
    }
}

impl From<RoutesError> for Fatal {
    fn from(error: RoutesError) -> Self {
        match error {
            RoutesError::Write(_) => Fatal::Io(error.to_string()),
            RoutesError::NoHost { .. }
            | RoutesError::HelperName { .. }
            | RoutesError::Config(_)
            | RoutesError::MalformedAuths { .. }
            | RoutesError::MalformedContainersFile { .. }
            | RoutesError::NoPodmanDir
            | RoutesError::ReadDropIn { .. } => Fatal::Usage(error.to_string()),
        }
    }
}

impl From<PrivateDirError> for Fatal {
    fn from(error: PrivateDirError) -> Self {
        match error {
            PrivateDirError::Write(_) | PrivateDirError::Remove { .. } => {
                Fatal::Io(error.to_string())
            }
            PrivateDirError::Config(_)
            | PrivateDirError::Create { .. }
            | PrivateDirError::NoFreeName { .. }
            | PrivateDirError::NotMade { .. } => Fatal::Usage(error.to_string()),
        }
    }
}

/// The derived command, every vendor module's flags (they live with the vendor, not here) where registries
/// are reached, and the wording of `--output` and `--dry-run` for each subcommand.
fn command() -> clap::Command {
    let vendor_flags = || {
        implementation::flags().map(|flag| {
            let variable = flag.name.replace('-', "_").to_ascii_uppercase();
            Arg::new(flag.name)
                .long(flag.name)
                .value_name(flag.value_name)
                .help(format!(
                    "{} [also REGKIT_{variable}, WERF_{variable}]",
                    flag.help
                ))
                .help_heading("Registry options (tags, delete, cleanup, undo, detect, doctor)")
        })
    };
    let mut command = Cli::command().args(vendor_flags());
    for name in REGISTRY_COMMANDS {
        command = command.mut_subcommand(name, |sub| {
            sub.args(vendor_flags().map(|flag| flag.help_heading(None)))
        });
    }
    for (name, id, help) in SCOPED_HELP {
        command = command.mut_subcommand(name, |sub| sub.mut_arg(id, |arg| arg.help(help)));
    }
    command
}

/// The vendor flags given after the subcommand, else before it.
fn vendor_settings(matches: &ArgMatches) -> Settings {
    let scoped = matches.subcommand().map(|(_, sub)| sub);
    Settings::new(implementation::flags().filter_map(|flag| {
        scoped
            .and_then(|sub| sub.try_get_one::<String>(flag.name).ok().flatten())
            .or_else(|| matches.get_one::<String>(flag.name))
            .map(|value| (flag.name.to_string(), value.clone()))
    }))
}

fn main() -> ExitCode {
    let matches = command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    if let Command::Generate(what) = &cli.command {
        return finish(generate::run(what, command()));
    }
    let mut options = Options::new(&cli);
    options.apply_env_fallbacks();
    if options.verbose {
        regkit::registry::on_retry(|line| eprintln!("regkit: {line}"));
    }
    let settings = vendor_settings(&matches);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("regkit: cannot start the async runtime: {error}");
            return ExitCode::from(report::EXIT_FAILED);
        }
    };
    finish(runtime.block_on(run(&cli.command, &options, settings)))
}

fn finish(result: Result<u8, Fatal>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(fatal) => {
            eprintln!("regkit: {fatal}");
            ExitCode::from(fatal.exit())
        }
    }
}

async fn run(subcommand: &Command, options: &Options, settings: Settings) -> Result<u8, Fatal> {
    // A directory the user named and that is not there would mean running without credentials unnoticed;
    // `configure` makes it.
    if let Some(dir) = &options.docker_config
        && !dir.is_dir()
        && !matches!(subcommand, Command::Configure { .. })
    {
        return Err(Fatal::Usage(format!(
            "the docker config directory {} (--docker-config, REGKIT_DOCKER_CONFIG or WERF_DOCKER_CONFIG) does not exist or is not a directory",
            dir.display()
        )));
    }
    regkit::registry::throttle::global().configure(
        Some(usize::from(options.parallel)),
        options.max_rps,
        options.timeout.map(std::time::Duration::from_secs),
    );
    let config = DockerConfig::load(options.docker_config.as_deref())
        .map_err(|error| Fatal::Usage(format!("cannot read the docker config: {error}")))?;
    let session_options = SessionOptions {
        implementation: options.repo_implementation.clone(),
        client: ClientOptions {
            insecure: options.insecure_registry,
            skip_tls_verify: options.skip_tls_verify_registry,
            ca_file: options.ca_file.clone(),
            ..ClientOptions::default()
        },
        parallel: usize::from(options.parallel),
    };
    let setup = Setup {
        options,
        session: Session::new(config, settings, session_options),
    };
    match subcommand {
        Command::Tags {
            repository,
            tree: true,
            ..
        } => tags_tree(&setup, repository).await,
        Command::Tags {
            repository,
            digests,
            ..
        } => tags(&setup, repository, *digests).await,
        Command::Delete {
            references,
            stdin,
            keep_referrers,
            journal,
            ..
        } => delete(&setup, references, *stdin, *keep_referrers, journal).await,
        Command::Cleanup { args, journal, .. } => cleanup::cleanup(&setup, args, journal).await,
        Command::Undo { file, .. } => undo(&setup, file.as_deref()).await,
        Command::Journal(JournalCommand::List { keep, .. }) => {
            journal_list(&setup, keep.keep_journals)
        }
        Command::InUse { args, .. } => inuse::run(&setup, args).await,
        Command::Detect { repository, .. } => detect(&setup, repository).await,
        Command::Configure { args, .. } => configure::run(
            args,
            setup.session.config().dir(),
            configure::Mode {
                dry_run: setup.options.dry_run,
                quiet: setup.options.quiet,
            },
        ),
        Command::Doctor { repository, .. } => doctor::run(&setup, repository).await,
        Command::CiEnv(args) => cienv::run(args, setup.session.config().dir()),
        Command::Generate(what) => generate::run(what, command()),
    }
}

/// What every command needs to reach a registry: the library's session, and how to print.
struct Setup<'a> {
    options: &'a Options,
    session: Session,
}

impl Setup<'_> {
    /// Credentials, client and implementation for `registry`; `--verbose` says which and why.
    async fn connect(&self, registry: &str) -> Result<Connection, Fatal> {
        let connection = self.session.connect(registry).await?;
        self.explain(registry, &connection);
        Ok(connection)
    }

    /// The `--verbose` lines about a new connection.
    fn explain(&self, registry: &str, connection: &Connection) {
        if !self.options.verbose {
            return;
        }
        eprintln!(
            "regkit: {registry}: implementation {} ({}); credentials: {}",
            connection.detection.name,
            connection.detection.by,
            connection.auth.describe(&connection.source)
        );
        if connection.implementation.capabilities().delete_removes == DeleteRemoves::Manifest {
            eprintln!(
                "regkit: {registry}: deleting a tag can delete its manifest here; a tag whose manifest a kept index lists is kept"
            );
        }
    }

    fn json(&self) -> bool {
        self.options.output == Output::Json
    }
}

impl Observer for Setup<'_> {
    fn connected(&self, registry: &str, connection: &Connection) {
        self.explain(registry, connection);
    }
}

impl Setup<'_> {
    /// A REPO or reference argument without the scheme of a pasted URL, where that is the scheme regkit
    /// speaks to its host anyway ([`strip_url_scheme`]).
    fn unpasted<'i>(&self, input: &'i str) -> Result<&'i str, Fatal> {
        Ok(strip_url_scheme(input, self.options.insecure_registry)?)
    }

    fn parse_repository(&self, input: &str) -> Result<Repository, Fatal> {
        Repository::parse(self.unpasted(input)?).map_err(|error| Fatal::Usage(error.to_string()))
    }
}

async fn tags(setup: &Setup<'_>, repository: &str, digests: bool) -> Result<u8, Fatal> {
    let repository = setup.parse_repository(repository)?;
    let connection = setup.connect(&repository.registry).await?;
    let listed = connection
        .implementation
        .list_tags(&repository, digests)
        .await?;
    let rows: Vec<TagRow> = listed
        .into_iter()
        .map(|info| TagRow {
            repository: repository.to_string(),
            tag: info.tag,
            digest: info.digest,
        })
        .collect();
    if setup.json() || !setup.options.quiet {
        print_with(|out| report::write_tags(out, &rows, setup.json()))?;
    }
    Ok(report::EXIT_OK)
}

/// `regkit tags --tree`: each image, then its referrers beneath it.
async fn tags_tree(setup: &Setup<'_>, repository: &str) -> Result<u8, Fatal> {
    let repository = setup.parse_repository(repository)?;
    let connection = setup.connect(&repository.registry).await?;
    let listed = connection
        .implementation
        .list_tags(&repository, true)
        .await?;
    let pairs: Vec<(String, String)> = listed
        .into_iter()
        .filter_map(|info| Some((info.tag, info.digest?)))
        .collect();
    let parallel = usize::from(setup.options.parallel);
    let digests: Vec<String> = pairs.iter().map(|(_, digest)| digest.clone()).collect();
    let api = (connection.implementation.as_ref(), &connection.client);
    let listed = regkit::referrers::ask_api(api, &repository, &digests, parallel).await?;
    let nodes = regkit::referrers::tree(
        &connection.client,
        &repository.path,
        &pairs,
        listed.as_ref(),
        parallel,
    )
    .await?;
    if setup.options.quiet && !setup.json() {
        return Ok(report::EXIT_OK);
    }
    let name = repository.to_string();
    print_with(|out| {
        for node in &nodes {
            if setup.json() {
                serde_json::to_writer(
                    &mut *out,
                    &serde_json::json!({"repository": name, "node": node}),
                )?;
                writeln!(out)?;
                continue;
            }
            let tag = node.tag.as_deref().unwrap_or("(untagged)");
            let kind = node.artifact_type.as_deref().unwrap_or("-");
            match (node.depth, node.orphan) {
                (0, false) => writeln!(out, "{tag}  {}", node.digest)?,
                (0, true) => writeln!(
                    out,
                    "(orphan: {} is gone)\n└─ {kind}  {}  {tag}",
                    node.subject.as_deref().unwrap_or("-"),
                    node.digest
                )?,
                (depth, _) => writeln!(
                    out,
                    "{}└─ {kind}  {}  {tag}",
                    "   ".repeat(depth - 1),
                    node.digest
                )?,
            }
        }
        Ok(())
    })?;
    Ok(report::EXIT_OK)
}

async fn delete(
    setup: &Setup<'_>,
    arguments: &[String],
    stdin: bool,
    keep_referrers: bool,
    journal_args: &JournalArgs,
) -> Result<u8, Fatal> {
    let mut inputs: Vec<String> = arguments.to_vec();
    if stdin {
        for line in io::stdin().lock().lines() {
            let line = line.map_err(|error| {
                Fatal::Usage(format!("cannot read references from stdin: {error}"))
            })?;
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                inputs.push(line.to_string());
            }
        }
    }
    // Everything is validated before the first request, so a typo on line 900 cannot leave a half-done run.
    let mut groups: Vec<(Repository, Vec<Target>)> = Vec::new();
    for input in &inputs {
        let reference = Reference::parse(setup.unpasted(input)?)
            .map_err(|error| Fatal::Usage(error.to_string()))?;
        match groups
            .iter_mut()
            .find(|(repository, _)| *repository == reference.repository)
        {
            Some((_, targets)) => targets.push(reference.target),
            None => groups.push((reference.repository, vec![reference.target])),
        }
    }
    let mut connections: BTreeMap<String, Connection> = BTreeMap::new();
    for (repository, _) in &groups {
        if !connections.contains_key(repository.registry.as_str()) {
            connections.insert(
                repository.registry.clone(),
                setup.connect(&repository.registry).await?,
            );
        }
    }
    // A manifest deleted by digest takes its referrers, found before anything is deleted.
    for (repository, targets) in &mut groups {
        let digests: BTreeSet<String> = targets
            .iter()
            .filter_map(|target| match target {
                Target::Digest(digest) => Some(digest.clone()),
                Target::Tag(_) => None,
            })
            .collect();
        let Some(connection) = connections.get(repository.registry.as_str()) else {
            continue;
        };
        if keep_referrers || digests.is_empty() {
            continue;
        }
        let parallel = usize::from(setup.options.parallel);
        for referrer in
            regkit::cleanup::referrers_of(connection, repository, &digests, parallel).await?
        {
            if !targets.contains(&referrer) {
                targets.push(referrer);
            }
        }
    }
    let registries = connections.keys().cloned().collect();
    let journal = open_journal(setup, journal_args, "delete", registries)?;
    let total: usize = groups.iter().map(|(_, targets)| targets.len()).sum();
    let bar = progress_bar(setup, total);
    let on_progress = |finished: u64| {
        if let Some(bar) = &bar {
            bar.inc(finished);
        }
    };
    let mut entries = Vec::with_capacity(total);
    for (repository, targets) in &groups {
        let Some(connection) = connections.get(repository.registry.as_str()) else {
            continue;
        };
        let request = DeleteRequest {
            repository,
            targets,
            dry_run: setup.options.dry_run,
            progress: &on_progress,
            kept_index_children: None,
            journal: journal.as_ref().map(|journal| Journaling {
                journal,
                client: &connection.client,
            }),
        };
        entries.extend(connection.implementation.delete(request).await);
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    warn_unrecorded(journal.as_ref());
    print_entries(setup, &entries, journal_written(journal.as_ref()))
}

/// Per-target rows as a table or JSON Lines, naming the undo journal last, each distinct error on stderr;
/// the run's exit code.
fn print_entries(
    setup: &Setup<'_>,
    entries: &[report::Entry],
    journal: Option<String>,
) -> Result<u8, Fatal> {
    if setup.json() {
        print_with(|out| report::write_json_lines(out, entries, journal.as_deref()))?;
    } else if !setup.options.quiet {
        print_with(|out| {
            report::write_text(out, entries)?;
            match &journal {
                Some(journal) => writeln!(out, "{}", journal_line(journal)),
                None => Ok(()),
            }
        })?;
    }
    for error in report::distinct_errors(entries) {
        eprintln!("regkit: {error}");
    }
    Ok(report::exit_code(entries))
}

/// The last line of a text output that changed something.
pub(crate) fn journal_line(path: &str) -> String {
    format!("undo journal: {path} (regkit undo {path} puts back what this run removed)")
}

/// The run's undo journal, unless a dry run or `--no-journal`; the default directory's old journals are
/// removed first.
fn open_journal(
    setup: &Setup<'_>,
    args: &JournalArgs,
    command: &str,
    registries: Vec<String>,
) -> Result<Option<Journal>, Fatal> {
    if setup.options.dry_run || args.no_journal {
        return Ok(None);
    }
    let location = match &args.journal {
        Some(file) if file.exists() => {
            return Err(Fatal::Usage(format!(
                "the undo journal {} (--journal) exists already: name a new file",
                file.display()
            )));
        }
        Some(file) => Location::File(file.clone()),
        None => {
            let dir = journal_dir()?;
            prune_journals(&dir, args.keep.keep_journals);
            Location::Dir(dir)
        }
    };
    Ok(Some(Journal::new(location, command, registries)))
}

fn journal_dir() -> Result<PathBuf, Fatal> {
    regkit::journal::default_dir().map_err(|error| Fatal::Usage(error.to_string()))
}

/// Removes the journals older than `keep` seconds (default 30 days); a failure is said, not fatal.
fn prune_journals(dir: &std::path::Path, keep: Option<u64>) {
    let keep = keep.map_or(
        regkit::journal::DEFAULT_KEEP,
        std::time::Duration::from_secs,
    );
    if let Err(error) = regkit::journal::prune(dir, keep) {
        eprintln!("regkit: {error}");
    }
}

/// The journal's path, once the run recorded something in it.
/// Says on stderr how many changes went unrecorded (their manifests could not be read), so nobody counts
/// on undoing them.
pub(crate) fn warn_unrecorded(journal: Option<&Journal>) {
    if let Some((count, why)) = journal.and_then(Journal::missing) {
        eprintln!(
            "regkit: {count} change(s) were sent without an undo journal line and cannot be undone: {why}"
        );
    }
}

pub(crate) fn journal_written(journal: Option<&Journal>) -> Option<String> {
    journal
        .filter(|journal| journal.changes() > 0)
        .map(|journal| journal.path().display().to_string())
}

/// `regkit undo`: every verified line of the journal put back, registry by registry.
async fn undo(setup: &Setup<'_>, file: Option<&std::path::Path>) -> Result<u8, Fatal> {
    let path = match file {
        Some(file) => file.to_path_buf(),
        None => regkit::journal::last(&journal_dir()?)
            .map_err(|error| Fatal::Usage(error.to_string()))?,
    };
    let read = regkit::journal::read(&path).map_err(|error| Fatal::Usage(error.to_string()))?;
    let mut entries = Vec::new();
    let mut restores = Vec::new();
    for line in read.lines {
        match line.change {
            Ok((change, body)) => restores.push(Restore {
                line: line.number,
                change,
                body,
            }),
            Err(why) => entries.push(report::Entry::failed(
                format!("{}:{}", path.display(), line.number),
                String::new(),
                None,
                report::FailureKind::Other,
                format!(
                    "journal {} line {}: {why}; nothing pushed for it",
                    path.display(),
                    line.number
                ),
            )),
        }
    }
    for (registry, restores) in regkit::undo::by_registry(restores) {
        let connection = setup.connect(&registry).await?;
        entries.extend(
            regkit::undo::restore(&connection.client, &restores, setup.options.dry_run).await,
        );
    }
    print_entries(setup, &entries, None)
}

/// `regkit journal list`.
fn journal_list(setup: &Setup<'_>, keep: Option<u64>) -> Result<u8, Fatal> {
    let dir = journal_dir()?;
    prune_journals(&dir, keep);
    let paths = regkit::journal::journals(&dir).map_err(|error| Fatal::Io(error.to_string()))?;
    let mut summaries = Vec::new();
    let mut code = report::EXIT_OK;
    for path in paths {
        match regkit::journal::summary(&path) {
            Ok(summary) => summaries.push(summary),
            Err(error) => {
                eprintln!("regkit: {error}");
                code = EXIT_FAILED;
            }
        }
    }
    if setup.json() {
        print_with(|out| {
            for summary in &summaries {
                serde_json::to_writer(&mut *out, summary)?;
                writeln!(out)?;
            }
            Ok(())
        })?;
    } else if !setup.options.quiet {
        let cells: Vec<[String; 7]> = summaries
            .iter()
            .map(|summary| {
                [
                    summary.time.clone(),
                    summary.command.clone(),
                    summary.registries.join(","),
                    summary.manifest_deletes.to_string(),
                    summary.tombstone_untags.to_string(),
                    summary.vendor_untags.to_string(),
                    summary.path.display().to_string(),
                ]
            })
            .collect();
        let rows: Vec<[&str; 7]> = cells
            .iter()
            .map(|row| row.each_ref().map(String::as_str))
            .collect();
        let header = [
            "TIME",
            "COMMAND",
            "REGISTRIES",
            "DELETED",
            "UNTAGGED",
            "VENDOR-UNTAGGED",
            "JOURNAL",
        ];
        print_with(|out| report::write_table(out, header, &rows))?;
    }
    Ok(code)
}

fn progress_bar(setup: &Setup<'_>, total: usize) -> Option<ProgressBar> {
    if setup.json() || setup.options.quiet || !io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    // indicatif's default bar, plus the wait a rate limit imposes, redrawn every second.
    let style = ProgressStyle::with_template("{wide_bar} {pos}/{len} {msg}{wait}").map(|style| {
        style.with_key(
            "wait",
            |_: &ProgressState, out: &mut dyn std::fmt::Write| {
                if let Some((host, left)) = regkit::registry::throttle::global().waits().first() {
                    let _ = std::fmt::Write::write_fmt(
                        out,
                        format_args!(
                            " (rate limited by {host}, resuming in {} s)",
                            left.as_secs() + 1
                        ),
                    );
                }
            },
        )
    });
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_secs(1));
    Some(bar)
}

async fn detect(setup: &Setup<'_>, repository: &str) -> Result<u8, Fatal> {
    let repository = setup.parse_repository(repository)?;
    let client = setup.session.anonymous_client(&repository.registry)?;
    let detection = setup.session.detect(&repository.registry, &client).await?;
    let (auth, source) = setup.session.credentials(&repository.registry)?;
    if setup.json() {
        let (kind, username) = auth.kind();
        let line = serde_json::json!({
            "repository": repository.to_string(),
            "registry": repository.registry,
            "implementation": detection.name,
            "chosen": detection.by.to_string(),
            // Every name detection gives has an implementation; the key stays for the scripts that read it.
            "supported": true,
            "credentials": {"kind": kind, "username": username, "source": source.to_string()},
        });
        print_with(|out| writeln!(out, "{line}"))?;
    } else {
        print_with(|out| {
            writeln!(out, "repository:      {repository}")?;
            writeln!(
                out,
                "implementation:  {} ({})",
                detection.name, detection.by
            )?;
            writeln!(out, "credentials:     {}", auth.describe(&source))
        })?;
    }
    Ok(report::EXIT_OK)
}

fn print_with(
    write: impl FnOnce(&mut io::BufWriter<io::StdoutLock<'_>>) -> io::Result<()>,
) -> Result<(), Fatal> {
    // Rust's stdout is line-buffered even into a pipe: without this, 10 000 tags are 10 000 write calls.
    let mut out = io::BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    match write(&mut out).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // A closed pipe (`regkit tags … | head`) is the reader's choice, not a failure.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(error) => Err(Fatal::Io(format!("cannot write the output: {error}"))),
    }
}
