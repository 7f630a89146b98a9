//! Which local paths are never synced: a `.stacksyncignore` file at the
//! root (gitignore-like) plus defaults for temporary and editor files and
//! the engine's own temporary names.

use std::sync::LazyLock;

use globset::{Glob, GlobBuilder, GlobMatcher};
use stacksync_proto::ItemName;

use crate::path::RelPath;

/// The name of the per-folder ignore file (read at the root only).
pub const IGNORE_FILE: &str = ".stacksyncignore";

/// Prefix of the temporary files downloads are written to before being
/// verified and renamed into place. Always ignored, and removed by the
/// engine when found (a download interrupted by a crash).
pub const DOWNLOAD_TEMP_PREFIX: &str = ".stacksync-dl-";

/// Prefix of the temporary name an item passes through when moves form a
/// cycle (a swap). Deliberately *not* ignored: after a crash mid-swap the
/// item must still be seen, or it would look deleted.
pub const MOVE_TEMP_PREFIX: &str = ".stacksync-move-";

/// Patterns that apply even without an ignore file: office lock files,
/// editor swap files, OS metadata files, and the engine's own temp files.
pub const DEFAULT_PATTERNS: &[&str] = &[
    "*.tmp",
    "~$*",
    ".~lock.*#",
    "*.swp",
    ".DS_Store",
    "Thumbs.db",
    "desktop.ini",
    ".stacksync-dl-*",
];

/// The default rules, compiled once.
static DEFAULTS: LazyLock<IgnoreRules> = LazyLock::new(IgnoreRules::defaults);

/// Whether `name` is one StackSync keeps for itself on every device: its
/// download and move temporaries, and the [`DEFAULT_PATTERNS`]. An item the
/// server has under such a name is a name clash on this device, never
/// something to download, move into place or delete.
pub fn is_reserved_name(name: &ItemName, is_folder: bool) -> bool {
    let n = name.as_str();
    n.starts_with(DOWNLOAD_TEMP_PREFIX)
        || n.starts_with(MOVE_TEMP_PREFIX)
        || DEFAULTS.is_ignored(&RelPath::root().join(name), is_folder)
}

#[derive(Debug, Clone)]
struct Rule {
    matcher: GlobMatcher,
    negate: bool,
    dir_only: bool,
    // Patterns with a `/` match the whole path from the root; others match
    // the entry's own name at any depth (gitignore's rule).
    anchored: bool,
}

/// A compiled set of ignore rules. Later rules override earlier ones, and
/// `!pattern` un-ignores, as in gitignore. A folder that is ignored hides
/// everything inside it.
///
/// Besides patterns, a set of **excluded paths** can be added
/// ([`IgnoreRules::excluding`]): the places where other workspaces are
/// mounted inside this one's folder (shared folders). An excluded path is
/// left out whatever the patterns say, like an ignored folder: never
/// scanned, never deleted, never downloaded into.
#[derive(Debug, Clone)]
pub struct IgnoreRules {
    rules: Vec<Rule>,
    excluded: std::collections::BTreeSet<RelPath>,
}

/// A line of an ignore file that could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPattern {
    /// 1-based line number.
    pub line: usize,
    /// The line as written.
    pub pattern: String,
    /// Why it does not compile.
    pub message: String,
}

impl Default for IgnoreRules {
    fn default() -> Self {
        IgnoreRules::defaults()
    }
}

impl IgnoreRules {
    /// Only the [`DEFAULT_PATTERNS`].
    pub fn defaults() -> IgnoreRules {
        let mut rules = IgnoreRules {
            rules: Vec::new(),
            excluded: std::collections::BTreeSet::new(),
        };
        for p in DEFAULT_PATTERNS {
            // The defaults are fixed strings known to compile.
            rules
                .push_line(p)
                .expect("default ignore patterns are valid globs");
        }
        rules
    }

    /// The defaults followed by the lines of an ignore file; bad lines are
    /// skipped and returned so that they can be reported.
    pub fn with_file(text: &str) -> (IgnoreRules, Vec<BadPattern>) {
        let mut rules = IgnoreRules::defaults();
        let mut bad = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if let Err(message) = rules.push_line(line) {
                bad.push(BadPattern {
                    line: i + 1,
                    pattern: line.to_string(),
                    message,
                });
            }
        }
        (rules, bad)
    }

    /// These rules with `paths` excluded as well (see the type's docs).
    pub fn excluding(mut self, paths: &std::collections::BTreeSet<RelPath>) -> IgnoreRules {
        self.excluded
            .extend(paths.iter().filter(|p| !p.is_root()).cloned());
        self
    }

    /// Whether `path` is an excluded path (not one inside it).
    pub fn is_excluded(&self, path: &RelPath) -> bool {
        self.excluded.contains(path)
    }

    fn push_line(&mut self, line: &str) -> Result<(), String> {
        let line = line.trim_end_matches(['\r', '\n']).trim_end();
        if line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        let (negate, rest) = match line.strip_prefix('!') {
            Some(r) => (true, r),
            None => (false, line),
        };
        let (dir_only, rest) = match rest.strip_suffix('/') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let anchored = rest.contains('/');
        let rest = rest.trim_start_matches('/');
        if rest.is_empty() {
            return Err("empty pattern".into());
        }
        let glob: Glob = GlobBuilder::new(rest)
            .literal_separator(true)
            .build()
            .map_err(|e| e.to_string())?;
        self.rules.push(Rule {
            matcher: glob.compile_matcher(),
            negate,
            dir_only,
            anchored,
        });
        Ok(())
    }

    /// Whether this one entry is ignored, looking at its own name and full
    /// path only (callers that walk top-down have already checked the
    /// ancestors).
    pub fn is_ignored(&self, path: &RelPath, is_folder: bool) -> bool {
        let Some(name) = path.name() else {
            return false;
        };
        if self.excluded.contains(path) {
            return true;
        }
        let full = path.to_string();
        let mut ignored = false;
        for rule in &self.rules {
            if rule.dir_only && !is_folder {
                continue;
            }
            let hit = if rule.anchored {
                rule.matcher.is_match(&full)
            } else {
                rule.matcher.is_match(name.as_str())
            };
            if hit {
                ignored = !rule.negate;
            }
        }
        ignored
    }

    /// Whether the entry or any folder above it is ignored.
    pub fn is_ignored_path(&self, path: &RelPath, is_folder: bool) -> bool {
        let mut prefix = RelPath::root();
        let n = path.depth();
        for (i, c) in path.components().iter().enumerate() {
            prefix = prefix.join(c);
            let folder = i + 1 < n || is_folder;
            if self.is_ignored(&prefix, folder) {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    #[test]
    fn defaults_cover_editor_and_os_files() {
        let r = IgnoreRules::defaults();
        for f in [
            "a.tmp",
            "~$report.docx",
            ".~lock.x.odt#",
            "x/.y.swp",
            ".DS_Store",
            "Thumbs.db",
            "d/desktop.ini",
            ".stacksync-dl-1",
        ] {
            assert!(r.is_ignored_path(&p(f), false), "{f}");
        }
        for f in [
            "report.docx",
            "tmp",
            "a.tmpx",
            "notes.txt",
            ".stacksync-move-x",
        ] {
            assert!(!r.is_ignored_path(&p(f), false), "{f}");
        }
    }

    #[test]
    fn reserved_names_are_the_temporaries_and_the_defaults() {
        let n = |s: &str| ItemName::new(s).unwrap();
        for f in [
            ".stacksync-dl-notes",
            ".stacksync-move-x",
            "a.tmp",
            ".DS_Store",
        ] {
            assert!(is_reserved_name(&n(f), false), "{f}");
        }
        for f in ["notes.txt", "stacksync-dl-x", ".stacksyncignore"] {
            assert!(!is_reserved_name(&n(f), false), "{f}");
        }
    }

    #[test]
    fn file_patterns_negation_anchoring_and_dirs() {
        let (r, bad) = IgnoreRules::with_file("# c\n*.log\n!keep.log\n/build/\ndocs/*.pdf\n[\n");
        assert_eq!(bad.len(), 1);
        assert!(r.is_ignored_path(&p("a/b.log"), false));
        assert!(!r.is_ignored_path(&p("a/keep.log"), false));
        assert!(r.is_ignored_path(&p("build"), true));
        assert!(!r.is_ignored_path(&p("build"), false));
        assert!(r.is_ignored_path(&p("build/x.c"), false));
        assert!(!r.is_ignored_path(&p("src/build/x.c"), false));
        assert!(r.is_ignored_path(&p("docs/a.pdf"), false));
        assert!(!r.is_ignored_path(&p("docs/sub/a.pdf"), false));
    }
}
