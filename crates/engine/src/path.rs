//! Relative paths inside the synced folder.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;

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
        // Exactly as long as it needs to be: a clone then a push would
        // double the capacity, and a tree holds one path per entry.
        let mut v = Vec::with_capacity(self.0.len() + 1);
        v.extend_from_slice(&self.0);
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

/// The entries of `tree` directly inside `dir`, in order, without walking
/// what is under them: each next child is found by a search that starts
/// past the previous child's subtree, so a folder's children cost
/// O(children x log n) whatever lies below them.
pub fn children_in<'a, V>(
    tree: &'a BTreeMap<RelPath, V>,
    dir: &'a RelPath,
) -> impl Iterator<Item = (&'a RelPath, &'a V)> + 'a {
    let depth = dir.depth() + 1;
    // Past the subtree of the last child found (as its components).
    let mut after: Option<&'a [ItemName]> = None;
    std::iter::from_fn(move || {
        loop {
            let past;
            let from: Bound<&dyn Bounds> = match after {
                None => Bound::Excluded(dir as &dyn Bounds),
                Some(c) => {
                    past = PastSubtree(c);
                    Bound::Excluded(&past as &dyn Bounds)
                }
            };
            let (path, value) = tree
                .range::<dyn Bounds, _>((from, Bound::Unbounded))
                .next()
                .filter(|(p, _)| p.starts_with(dir))?;
            // The first entry past the previous child's subtree is the next
            // child, or something under a folder the tree has no entry for
            // (then that folder's subtree is skipped as well).
            after = Some(&path.components()[..depth]);
            if path.depth() == depth {
                return Some((path, value));
            }
        }
    })
}

/// A bound in a tree of paths: a path, or the place right after a path and
/// everything under it (see [`children_in`]). Keys are always paths, and
/// among paths the order is `RelPath`'s own, so the two orders agree.
trait Bounds {
    fn parts(&self) -> &[ItemName];
    fn past_subtree(&self) -> bool;
}

impl Bounds for RelPath {
    fn parts(&self) -> &[ItemName] {
        &self.0
    }
    fn past_subtree(&self) -> bool {
        false
    }
}

/// Right after a path and everything under it.
struct PastSubtree<'a>(&'a [ItemName]);

impl Bounds for PastSubtree<'_> {
    fn parts(&self) -> &[ItemName] {
        self.0
    }
    fn past_subtree(&self) -> bool {
        true
    }
}

impl<'a> Borrow<dyn Bounds + 'a> for RelPath {
    fn borrow(&self) -> &(dyn Bounds + 'a) {
        self
    }
}

impl Ord for dyn Bounds + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.parts(), other.parts());
        for (x, y) in a.iter().zip(b) {
            match x.cmp(y) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        // One is a prefix of the other: the shorter comes first, unless it
        // stands for the place past its subtree.
        match a.len().cmp(&b.len()) {
            Ordering::Less if self.past_subtree() => Ordering::Greater,
            Ordering::Greater if other.past_subtree() => Ordering::Less,
            Ordering::Equal => self.past_subtree().cmp(&other.past_subtree()),
            o => o,
        }
    }
}

impl PartialOrd for dyn Bounds + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for dyn Bounds + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for dyn Bounds + '_ {}

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

    #[test]
    fn children_in_skips_subtrees_and_gaps() {
        let tree: BTreeMap<RelPath, ()> = [
            "a", "a/x", "a/x/deep", "a/y", "a!", "ab", "ab/z", "b/c/d", "b/e", "c",
        ]
        .into_iter()
        .map(|p| (RelPath::parse(p).unwrap(), ()))
        .collect();
        let names = |dir: &str| -> Vec<String> {
            let dir = RelPath::parse(dir).unwrap();
            children_in(&tree, &dir)
                .map(|(p, _)| p.to_string())
                .collect()
        };
        // "b" has no entry of its own, only things under it: not a child.
        assert_eq!(names(""), ["a", "a!", "ab", "c"]);
        assert_eq!(names("a"), ["a/x", "a/y"]);
        assert_eq!(names("a/x"), ["a/x/deep"]);
        assert_eq!(names("b"), ["b/e"]);
        assert_eq!(names("c"), Vec::<String>::new());
        assert_eq!(names("zz"), Vec::<String>::new());
        // The same as filtering every entry by its parent.
        for dir in ["", "a", "a/x", "ab", "b", "b/c"] {
            let d = RelPath::parse(dir).unwrap();
            let slow: Vec<String> = tree
                .keys()
                .filter(|p| p.parent().as_ref() == Some(&d))
                .map(|p| p.to_string())
                .collect();
            assert_eq!(names(dir), slow, "{dir}");
        }
    }
}
