//! Passwords read from standard input or a file instead of the command
//! line, where every user of the machine sees them (`ps`) and the shell
//! keeps them (history).

use std::io::Read;
use std::path::Path;
#[cfg(feature = "server")]
use std::path::PathBuf;

use anyhow::{Context, bail};

/// Most bytes read from a password source: a few passwords, not a file's worth.
const MAX_INPUT: u64 = 16 * 1024;

/// Where a password comes from (exactly one of the three).
#[cfg(feature = "server")]
#[derive(clap::Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct PasswordArgs {
    /// The password itself (visible to other users in `ps`; prefer the
    /// two options below).
    #[arg(long)]
    pub password: Option<String>,
    /// Reads the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Reads the password from the first line of this file.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

#[cfg(feature = "server")]
impl PasswordArgs {
    /// The password, from wherever it was given.
    pub fn read(&self) -> anyhow::Result<String> {
        if let Some(p) = &self.password {
            return Ok(p.clone());
        }
        let source = if self.password_stdin {
            None
        } else {
            self.password_file.as_deref()
        };
        let mut lines = read_lines(source, 1)?;
        Ok(lines.remove(0))
    }
}

/// The first `n` lines of `file`, or of standard input when `None`, each
/// without its line ending. Fewer lines than `n` is an error.
pub fn read_lines(file: Option<&Path>, n: usize) -> anyhow::Result<Vec<String>> {
    let mut text = String::new();
    match file {
        Some(path) => std::fs::File::open(path)
            .and_then(|f| f.take(MAX_INPUT).read_to_string(&mut text))
            .with_context(|| format!("reading {}", path.display()))?,
        None => std::io::stdin()
            .take(MAX_INPUT)
            .read_to_string(&mut text)
            .context("reading standard input")?,
    };
    let lines = split_lines(&text, n);
    if lines.len() < n {
        let from = file.map_or("standard input".to_owned(), |p| p.display().to_string());
        bail!("expected {n} line(s) in {from}, found {}", lines.len());
    }
    Ok(lines)
}

/// Up to `n` lines of `text`, each without its `\n` or `\r\n`. A last line
/// without a newline counts; nothing after a final newline does.
fn split_lines(text: &str, n: usize) -> Vec<String> {
    text.split_inclusive('\n')
        .take(n)
        .map(|l| {
            let l = l.strip_suffix('\n').unwrap_or(l);
            l.strip_suffix('\r').unwrap_or(l).to_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::split_lines;

    #[test]
    fn lines_lose_their_endings_and_keep_their_spaces() {
        assert_eq!(split_lines("a b \r\nsecond\n", 2), ["a b ", "second"]);
        assert_eq!(split_lines("no newline", 1), ["no newline"]);
        assert_eq!(split_lines("one\n", 2), ["one"]);
        assert!(split_lines("", 1).is_empty());
    }
}
