//! Relative paths inside the synced folder.

use std::fmt;

use serde::{Deserialize, Serialize};
use stacksync_proto::{ItemName, NameError};

/// A path relative to the root of the synced folder, as a list of validated
/// names.
///
/// Invariant: every component is an [`ItemName`], so a `RelPath` can never
/// be absolute, contain `..` or `.`, or smuggle a `/` inside a component.
/// The empty path is the root itself. Remote names become paths only
/// through this type, which is why a hostile server cannot make the engine
/// write outside the folder.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RelPath(Vec<ItemName>);

impl RelPath {
    /// The root of the synced folder.
    pub fn root() -> RelPath {
        RelPath(Vec::new())
    }

    /// Parses a `/`-separated relative path, refusing absolute paths, empty
    /// components, `.` and `..`.
    pub fn parse(s: &str) -> Result<RelPath, NameError> {
        if s.is_empty() {
            return Ok(RelPath::root());
        }
        s.split('/')
            .map(ItemName::new)
            .collect::<Result<Vec<_>, _>>()
            .map(RelPath)
    }

    /// True for the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path of `name` inside this one.
    pub fn join(&self, name: &ItemName) -> RelPath {
        let mut v = self.0.clone();
        v.push(name.clone());
        RelPath(v)
    }

    /// The containing folder; `None` for the root.
    pub fn parent(&self) -> Option<RelPath> {
        let (_, rest) = self.0.split_last()?;
        Some(RelPath(rest.to_vec()))
    }

    /// The last component; `None` for the root.
    pub fn name(&self) -> Option<&ItemName> {
        self.0.last()
    }

    /// The components, outermost first.
    pub fn components(&self) -> &[ItemName] {
        &self.0
    }

    /// True if `self` is `other` or lies inside it.
    pub fn starts_with(&self, other: &RelPath) -> bool {
        self.0.starts_with(&other.0)
    }

    /// Every folder above this path and the path itself, outermost first
    /// (the root excluded).
    pub fn ancestors_and_self(&self) -> impl Iterator<Item = RelPath> + '_ {
        (1..=self.0.len()).map(|n| RelPath(self.0[..n].to_vec()))
    }

    /// Number of components (0 for the root).
    pub fn depth(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(c.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_refuses_escapes() {
        assert!(RelPath::parse("a/b/c.txt").is_ok());
        assert!(RelPath::parse("").unwrap().is_root());
        assert_eq!(RelPath::parse("/etc"), Err(NameError::Empty));
        assert_eq!(RelPath::parse("a/../b"), Err(NameError::Dot));
        assert_eq!(RelPath::parse("a//b"), Err(NameError::Empty));
        assert_eq!(RelPath::parse("a/./b"), Err(NameError::Dot));
    }

    #[test]
    fn parent_join_and_display() {
        let p = RelPath::parse("x/y").unwrap();
        assert_eq!(p.to_string(), "x/y");
        assert_eq!(p.parent().unwrap().to_string(), "x");
        assert!(RelPath::root().parent().is_none());
        let n = ItemName::new("z").unwrap();
        assert_eq!(p.join(&n).to_string(), "x/y/z");
        assert!(p.join(&n).starts_with(&p));
        let all: Vec<String> = p.ancestors_and_self().map(|a| a.to_string()).collect();
        assert_eq!(all, ["x", "x/y"]);
    }
}
