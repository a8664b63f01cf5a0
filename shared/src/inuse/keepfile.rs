//! `--keep-images FILE`: images other deployers run (Nomad, ECS, Compose, charts not yet installed), one
//! reference per line, matched like a workload's. The whole file is read before the cleanup plans, so a bad
//! line stops the run before anything is deleted.

use super::{Image, InUse, Source};
use crate::reference::ReferenceError;

/// A line that is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--keep-images {file}, line {line}: {error}")]
pub struct KeepFileError {
    /// The file as given (`-` for standard input).
    pub file: String,
    /// The line number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub error: ReferenceError,
}

/// Adds every reference in `text` (read from `file`) to `set`: blank lines and `#` comments are skipped (`#`
/// cannot occur in a reference, so a comment may follow one).
pub fn add(set: &mut InUse, file: &str, text: &str) -> Result<usize, KeepFileError> {
    let mut parsed = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        let image = Image::parse(entry).map_err(|error| KeepFileError {
            file: file.to_string(),
            line: index + 1,
            error,
        })?;
        parsed.push((image, index + 1));
    }
    let count = parsed.len();
    for (image, line) in parsed {
        set.add(
            image,
            Source::KeepFile {
                file: file.to_string(),
                line,
            },
        );
    }
    set.scanned
        .push(format!("--keep-images {file}: {count} image(s)"));
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_and_the_line_of_an_error() {
        let mut set = InUse::default();
        let count = add(
            &mut set,
            "deployed.txt",
            "# nomad jobs\nnginx\n\n  r.io/team/app:v3  # web\n",
        )
        .unwrap();
        assert_eq!(count, 2);
        let keep = set.keeps("r.io/team/app", Some("v3"), None).unwrap();
        assert_eq!(keep.to_string(), "in use by deployed.txt:4");
        assert!(
            set.keeps("docker.io/library/nginx", Some("latest"), None)
                .is_some()
        );

        let mut set = InUse::default();
        let error = add(&mut set, "-", "nginx\nNot A Reference\n").unwrap_err();
        assert_eq!(error.line, 2);
        let text = error.to_string();
        assert!(
            text.starts_with("--keep-images -, line 2: invalid image reference"),
            "{text}"
        );
        assert!(!text.contains('\n'));
        // Nothing of a bad file is taken.
        assert!(set.is_empty());
    }
}
