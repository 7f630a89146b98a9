//! The zstd dictionary of compact level 1 (`wire`): JSON as our messages
//! spell it, so that the field names and common values of a small message
//! cost a few bits each instead of their letters. It is raw content (no
//! trained tables), loaded by both sides; it is part of the protocol, so
//! changing a single byte needs a new compact level. What is used most
//! sits last, where zstd's offsets are cheapest.

/// The dictionary bytes.
pub const DICTIONARY: &[u8] = concat!(
    r#"{"v":1,"c":1,"body":{"request_id":"","token":"","request":{"op":"login","email":"","password":""}}}"#,
    r#"{"op":"get_account"}{"op":"get_workspaces"}{"op":"update_device","id":null,"name":"","os":"linux","app_version":""}"#,
    r#"{"op":"locate_chunks","workspace":"","ids":["#,
    r#"{"op":"chunk_locations","chunks":[null,{"id":"","size":4194304,"span":{"pack":"","offset":0,"len":"#,
    r#"{"op":"workspaces","workspaces":[{"id":"","name":"","owner":"","is_shared":false,"encryption":"none","mount_parent":null}]}"#,
    r#"{"v":1,"body":{"type":"commit","workspace":"","device":"","revision":1,"items":[]}}"#,
    r#"{"Err":{"kind":"conflict","message":"","current":{"#,
    r#"{"op":"changes","workspace":"","items":[{"id":"","workspace":"","parent":null,"name":"","is_folder":true,"mimetype":null,"status":"NEW","version":1,"content_hash":null,"size":0,"client_modified":1764000000000,"server_modified":1764000000000,"device":"","revision":1,"chunks":[]}],"cursor":1,"has_more":false}"#,
    r#"{"op":"commit_brief","workspace":"","device":"","revision":1,"results":[{"f":{"id":"","version":1,"outcome":"conflict","current":{}}},{"a":{"r":1,"t":1764000000000,"s":"RENAMED"}},{"a":{"r":1,"t":1764000000000}}]}"#,
    r#"{"v":1,"c":1,"body":{"request_id":"","result":{"Ok":{"op":"changes","workspace":"","items":[],"cursor":0,"has_more":false}}}}"#,
    r#"{"v":1,"c":1,"body":{"request_id":"","token":"","request":{"op":"get_changes","workspace":"","since":0,"limit":1000}}}"#,
    r#"{"v":1,"c":1,"body":{"request_id":"","token":"","request":{"op":"commit","workspace":"","device":"","items":[{"id":"","parent":null,"name":"","is_folder":true,"mimetype":null,"status":"NEW","version":1,"size":0,"client_modified":1764000000000,"chunks":[]},"#,
    r#"{"id":"","parent":"","name":".txt","is_folder":false,"mimetype":null,"status":"CHANGED","version":2,"content_hash":"","size":1,"client_modified":1764000000000,"chunks":[{"id":"","size":1,"span":{"pack":"","offset":0,"len":1}}]}]}}}"#,
)
.as_bytes();
