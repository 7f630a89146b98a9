//! Validated names: containers and storage users. Both end up in URLs, file
//! paths and ACL headers, so they are checked strictly once, here, and the
//! rest of the crate can use them without escaping.

use std::fmt;

use stacksync_proto::WorkspaceId;

use crate::error::{BlobError, BlobErrorKind, Result};

/// Longest container name accepted. Swift allows 256 bytes; we stay well
/// below so that local paths stay short too.
pub const MAX_CONTAINER_NAME: usize = 128;

/// Longest storage user accepted (Swift `account:user` or Keystone
/// `project_id:user_id`).
pub const MAX_STORAGE_USER: usize = 256;

fn invalid(what: &str, name: &str, why: &str) -> BlobError {
    let shown: String = name.chars().take(64).collect();
    BlobError::new(
        BlobErrorKind::InvalidName,
        format!("invalid {what} {shown:?}: {why}"),
    )
}

/// A storage container: one per workspace (`ws-<workspace uuid>`).
///
/// Invariant: 1..=128 ASCII letters, digits, `-`, `_` or `.`, not starting
/// with `.`. So it never holds `/`, `..`, spaces or control characters and
/// is safe as a path component and a URL path segment without escaping.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerName(String);

impl ContainerName {
    /// Checks `name` against the invariant above.
    pub fn new(name: &str) -> Result<ContainerName> {
        if name.is_empty() || name.len() > MAX_CONTAINER_NAME {
            return Err(invalid("container", name, "length must be 1..=128"));
        }
        if name.starts_with('.') {
            return Err(invalid("container", name, "must not start with '.'"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(invalid(
                "container",
                name,
                "only ASCII letters, digits, '-', '_', '.'",
            ));
        }
        Ok(ContainerName(name.to_owned()))
    }

    /// The container of a workspace, as the original mapped it: one
    /// container per workspace.
    pub fn for_workspace(workspace: WorkspaceId) -> ContainerName {
        // A hyphenated UUID is 36 characters of hex and '-': within the invariant.
        ContainerName(format!("ws-{workspace}"))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ContainerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "container({})", self.0)
    }
}

/// A storage user that ACLs name: a StackSync user maps to one Swift user
/// (`account:user` with TempAuth, `project_id:user_id` with Keystone).
///
/// Invariant: 1..=256 ASCII letters, digits and `-_.@:`, not starting with
/// `.` — so no commas (ACL list separator), no whitespace, and never a Swift
/// referrer rule like `.r:*` that would make a container public.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StorageUser(String);

impl StorageUser {
    /// Checks `name` against the invariant above.
    pub fn new(name: &str) -> Result<StorageUser> {
        if name.is_empty() || name.len() > MAX_STORAGE_USER {
            return Err(invalid("storage user", name, "length must be 1..=256"));
        }
        if name.starts_with('.') {
            return Err(invalid("storage user", name, "must not start with '.'"));
        }
        let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b':');
        if !name.bytes().all(ok) {
            return Err(invalid(
                "storage user",
                name,
                "only ASCII letters, digits, '-_.@:'",
            ));
        }
        Ok(StorageUser(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StorageUser {
    type Error = BlobError;
    fn try_from(s: String) -> Result<StorageUser> {
        StorageUser::new(&s)
    }
}

impl From<StorageUser> for String {
    fn from(u: StorageUser) -> String {
        u.0
    }
}

impl fmt::Display for StorageUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StorageUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "storage_user({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_container(name: &str, ok: bool) {
        assert_eq!(ContainerName::new(name).is_ok(), ok, "{name:?}");
    }

    #[test]
    fn container_names() {
        for good in ["ws-1", "a", "A_b.c-d", &"x".repeat(128)] {
            check_container(good, true);
        }
        let long = "x".repeat(129);
        for bad in [
            "", ".", "..", ".hidden", "a/b", "../x", "a b", "a\nb", "a\0", "é", &long,
        ] {
            check_container(bad, false);
        }
        let ws = ContainerName::for_workspace(WorkspaceId::new());
        assert_eq!(ContainerName::new(ws.as_str()).unwrap(), ws);
    }

    #[test]
    fn storage_users() {
        for good in ["test:tester", "a@b.c", "0123abcd:9f"] {
            assert!(StorageUser::new(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            ".r:*",
            ".rlistings",
            "a,b",
            "a b",
            "a\tb",
            "u\r\nX-Evil: 1",
            "é",
        ] {
            assert!(StorageUser::new(bad).is_err(), "{bad:?}");
        }
        let json = serde_json::to_string(&StorageUser::new("t:u").unwrap()).unwrap();
        assert!(serde_json::from_str::<StorageUser>(&json).is_ok());
        assert!(serde_json::from_str::<StorageUser>("\".r:*\"").is_err());
    }
}
