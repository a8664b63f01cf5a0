//! `regkit doctor REPO`: prints the library's checks ([`regkit::doctor`]) as a table or one JSON line.

use std::io::Write;

use regkit::doctor::{self, Check, CheckStatus};

use super::{Fatal, Setup, print_with};

/// Runs every check and prints the report; the exit code is the first failure's, else 0.
pub(crate) async fn run(setup: &Setup<'_>, repository: &str) -> Result<u8, Fatal> {
    let repository = setup.parse_repository(repository)?;
    let checks = doctor::diagnose(&setup.session, &repository, setup).await?;
    print_report(setup, &repository.to_string(), &checks)?;
    Ok(doctor::exit_code(&checks))
}

fn print_report(setup: &Setup<'_>, repository: &str, checks: &[Check]) -> Result<(), Fatal> {
    if setup.json() {
        let checks: Vec<serde_json::Value> = checks
            .iter()
            .map(|check| {
                serde_json::json!({
                    "check": check.name,
                    "status": check.status.as_str(),
                    "detail": check.detail,
                })
            })
            .collect();
        let line = serde_json::json!({"repository": repository, "checks": checks});
        return print_with(|out| writeln!(out, "{line}"));
    }
    print_with(|out| {
        writeln!(out, "{:<16}{repository}", "repository:")?;
        for check in checks {
            let mark = match check.status {
                CheckStatus::Ok => "ok: ",
                CheckStatus::Failed => "FAILED: ",
                CheckStatus::Info => "",
            };
            writeln!(
                out,
                "{:<16}{mark}{}",
                format!("{}:", check.name),
                check.detail
            )?;
        }
        Ok(())
    })
}
