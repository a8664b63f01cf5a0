//! The in-use options shared by `regkit cleanup` and `regkit in-use`, the scan they run before anything
//! else ([`regkit::inuse`]), and `regkit in-use`'s output: one line per image in use, `reference`,
//! `digest`, `from` (`context/namespace/Kind/name` or `FILE:LINE`).

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use regkit::inuse::kubernetes::{self, ScanOptions};
use regkit::inuse::{InUse, keepfile};

use crate::{Fatal, Setup, print_with};

/// What counts as in use, and where to read it.
#[derive(clap::Args)]
pub(crate) struct InUseArgs {
    /// Do not read Kubernetes: keep nothing for workloads (werf's --without-kube).
    #[arg(long, env = "REGKIT_WITHOUT_KUBE", value_parser = BoolishValueParser::new())]
    without_kube: bool,
    /// Read only this kubeconfig context (repeatable; default: every context of KUBECONFIG or ~/.kube/config).
    #[arg(
        long = "kube-context",
        value_name = "NAME",
        conflicts_with = "without_kube"
    )]
    kube_contexts: Vec<String>,
    /// Read only this namespace (repeatable; default: every namespace).
    #[arg(
        long = "kube-namespace",
        value_name = "NS",
        conflicts_with = "without_kube"
    )]
    kube_namespaces: Vec<String>,
    /// Seconds one Kubernetes request may take before the scan, and the run, fail.
    #[arg(long, value_name = "SECONDS", env = "REGKIT_KUBE_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    kube_timeout: u64,
    /// Also keep the images listed in FILE (`-`: standard input; repeatable), one reference per line, #
    /// comments: for deployers regkit cannot read (Nomad, ECS, Compose, charts not yet installed).
    #[arg(long, value_name = "FILE")]
    keep_images: Vec<PathBuf>,
}

/// The in-use set: the `--keep-images` file first (a bad line must fail before any network request), then
/// every Kubernetes context. Any failure is a usage error (exit 2): nothing may be deleted without it.
pub(crate) async fn gather(args: &InUseArgs) -> Result<InUse, Fatal> {
    let mut set = InUse::default();
    for path in &args.keep_images {
        let (name, text) = if path.as_os_str() == "-" {
            let mut text = String::new();
            io::stdin().read_to_string(&mut text).map_err(|error| {
                Fatal::Usage(format!(
                    "cannot read --keep-images from standard input: {error}"
                ))
            })?;
            ("-".to_string(), text)
        } else {
            let text = std::fs::read_to_string(path).map_err(|error| {
                Fatal::Usage(format!(
                    "cannot read --keep-images {}: {error}",
                    path.display()
                ))
            })?;
            (path.display().to_string(), text)
        };
        keepfile::add(&mut set, &name, &text).map_err(|error| Fatal::Usage(error.to_string()))?;
    }
    if args.without_kube {
        set.scanned
            .push("kubernetes: not scanned (--without-kube)".into());
        return Ok(set);
    }
    let options = ScanOptions {
        contexts: args.kube_contexts.clone(),
        namespaces: args.kube_namespaces.clone(),
        timeout: Duration::from_secs(args.kube_timeout),
    };
    kubernetes::scan(&mut set, &options)
        .await
        .map_err(|error| Fatal::Usage(error.to_string()))?;
    Ok(set)
}

/// Says on stderr what the scan skipped (always) and what it read (with --verbose).
pub(crate) fn explain(setup: &Setup<'_>, set: &InUse) {
    if setup.options.verbose {
        for line in &set.scanned {
            eprintln!("regkit: in use: {line}");
        }
    }
    if !setup.options.quiet {
        for line in &set.skipped {
            eprintln!("regkit: in use: skipped {line}");
        }
    }
}

/// `regkit in-use`: the set, as a table or JSON Lines.
pub(crate) async fn run(setup: &Setup<'_>, args: &InUseArgs) -> Result<u8, Fatal> {
    let set = gather(args).await?;
    explain(setup, &set);
    let uses: Vec<_> = set.uses().collect();
    if setup.json() {
        print_with(|out| {
            for entry in &uses {
                serde_json::to_writer(&mut *out, entry)?;
                writeln!(out)?;
            }
            Ok(())
        })?;
    } else if !setup.options.quiet {
        print_with(|out| {
            let width = uses
                .iter()
                .map(|u| u.reference.len())
                .max()
                .unwrap_or(0)
                .max(9);
            writeln!(out, "{:<width$}  FROM", "REFERENCE")?;
            for entry in &uses {
                writeln!(out, "{:<width$}  {}", entry.reference, entry.from)?;
            }
            for line in &set.scanned {
                writeln!(out, "# {line}")?;
            }
            Ok(())
        })?;
    }
    Ok(regkit::report::EXIT_OK)
}
