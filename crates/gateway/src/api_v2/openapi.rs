//! The REST API's OpenAPI 3.1 document, derived from the handlers'
//! `#[utoipa::path]` attributes and the answer types below (the very types
//! the handlers serialize, so the document cannot drift from the answers),
//! served at `/api/v2/openapi.json`. OAuth 1.0a has no OpenAPI security
//! scheme of its own: it is declared as HTTP authentication with the
//! `OAuth` scheme (RFC 5849 section 3.5.1).

use axum::Json;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::answers::{Item, Status};
use super::sessions;
use super::{account, files, inbox, links};

/// A refusal: `error` is a short code (`not_found`, `conflict`,
/// `invalid_name`, `quota_exceeded`, or an OAuth problem such as
/// `signature_invalid` on a 401), `description` says why for a person.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiError {
    pub error: String,
    pub description: String,
    /// On a conflict with a newer version: the version the server has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
}

/// A file's bytes as they are (`application/octet-stream`, or the file's
/// own type; never a form). Binary, not a JSON array of numbers.
pub(crate) struct FileBytes;

impl utoipa::PartialSchema for FileBytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for FileBytes {}

/// A folder with the first page of what it holds.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Folder {
    #[serde(flatten)]
    pub item: Item,
    /// Shared folders placed here (first page only), then items by name.
    pub contents: Vec<Item>,
    /// Pass it to `GET /folder/{id}/contents?cursor=` for the next page;
    /// `null` on the last.
    pub cursor: Option<String>,
}

/// A page of a folder's contents.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Page {
    pub contents: Vec<Item>,
    /// The next page's cursor; `null` on the last.
    pub cursor: Option<String>,
}

/// A page of the change feed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Delta {
    /// The latest state of each changed item, deleted ones included, and
    /// shared folders the cursor did not know yet.
    pub entries: Vec<Item>,
    /// Pass it next time: `GET /delta?cursor=`.
    pub cursor: String,
    /// More changes wait: ask again at once.
    pub has_more: bool,
}

/// Someone a folder was shared with or unshared from.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Person {
    /// Their name (empty when the email has no account yet).
    pub name: String,
    pub email: String,
}

/// The answer to a share: who was invited.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SharedTo {
    pub shared_to: Vec<Person>,
}

/// The answer to an unshare: who was removed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UnsharedTo {
    pub unshared_to: Vec<Person>,
}

/// A member of a shared folder.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MemberAnswer {
    pub name: String,
    pub email: String,
    pub is_owner: bool,
    pub read_only: bool,
    #[schema(format = DateTime)]
    pub joined_at: Option<String>,
}

/// The account the request acts for.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AccountAnswer {
    #[schema(format = Uuid)]
    pub user_id: String,
    pub email: String,
    pub name: String,
    /// Bytes the account may store (0: no limit).
    pub quota_limit: u64,
    /// Bytes it stores.
    pub quota_used: u64,
}

/// An app the user authorised.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AppAnswer {
    /// The app's consumer key.
    pub key: String,
    pub name: String,
    /// When it was authorised (milliseconds since the epoch).
    pub authorized_at: i64,
}

/// The user's authorised apps.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Apps {
    pub apps: Vec<AppAnswer>,
}

/// An app's access, ended.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Revoked {
    /// The app's consumer key.
    pub revoked: String,
}

/// A rename or move: at least one of the two.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlacementBody {
    /// The new name.
    pub name: Option<String>,
    /// The new folder's id (`root` or `null`: the top folder).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub parent: Option<Option<String>>,
}

/// A field that may be `null`: `Some(None)` when it is, `None` when it is
/// missing.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A new folder.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewFolder {
    pub name: String,
    /// The folder to make it in (`root`, `null` or missing: the top folder).
    #[serde(default)]
    pub parent: Option<String>,
}

/// Whom to share with or unshare: a list of emails, or the emails with
/// the terms of a share.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum People {
    List(Vec<String>),
    Terms {
        emails: Vec<String>,
        /// Whether the invitees may only read (shares only).
        #[serde(default)]
        read_only: bool,
    },
}

/// Declares OAuth 1.0a as the API's security scheme.
struct OAuth1;

impl Modify for OAuth1 {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "oauth1",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::OAuth)
                    .description(Some(
                        "OAuth 1.0a (RFC 5849), HMAC-SHA1: the app's consumer key and the \
                         user's access token from /oauth/request_token, /oauth/authorize and \
                         /oauth/access_token",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "StackSync REST API",
        version = "2",
        description = "Files, folders, versions, sharing and the change feed of a StackSync \
                       account. Every request is signed with OAuth 1.0a. Under an OpenStack \
                       Swift proxy with the stacksync_api middleware the prefix is /v1 and \
                       requests carry the header StackSync-API: v2."
    ),
    servers((url = "/api/v2")),
    paths(
        account::account,
        account::apps,
        account::revoke,
        files::create_file,
        files::file,
        files::place_file,
        files::delete_file,
        files::download,
        files::upload,
        files::versions,
        files::version,
        files::version_download,
        files::restore,
        files::root_folder,
        files::create_folder,
        files::folder,
        files::place_folder,
        files::delete_folder,
        files::contents,
        files::share,
        files::unshare,
        files::members,
        files::delta,
        sessions::create,
        sessions::status,
        sessions::append,
        sessions::finish,
        sessions::cancel,
        inbox::trash,
        inbox::untrash,
        inbox::invitations,
        inbox::accept,
        inbox::decline,
        links::create,
        links::list,
        links::revoke,
    ),
    components(schemas(Item, Status, ApiError, Folder, Page, Delta, Person, SharedTo, UnsharedTo,
                       MemberAnswer, AccountAnswer, AppAnswer, Apps, Revoked, PlacementBody,
                       NewFolder, People, sessions::NewSession, sessions::NewFileSession,
                       sessions::NewVersionSession, sessions::FinishSession,
                       sessions::SessionAnswer, sessions::SessionRefused,
                       inbox::Trash, inbox::InvitationAnswer,
                       inbox::Invitations, inbox::Answered, links::NewLinkBody, links::LinkAnswer,
                       links::CreatedLinkAnswer, links::Links, links::Access, links::Expiry)),
    modifiers(&OAuth1),
    security(("oauth1" = [])),
)]
pub(crate) struct ApiDoc;

/// `GET /api/v2/openapi.json`: the document (public, like any API's).
pub(crate) async fn document() -> Response {
    let mut r = Json(the_document()).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public, max-age=300"),
    );
    r
}

/// The document as JSON. utoipa 5 writes a response link's fields in
/// snake case (`operation_id`); OpenAPI names them in camel case
/// (`operationId`), which is what clients following links (schemathesis'
/// stateful phase) read.
fn the_document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let operations = doc
        .get_mut("paths")
        .and_then(|p| p.as_object_mut())
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(|path| path.as_object_mut())
        .flat_map(|path| path.values_mut());
    for operation in operations {
        let responses = operation
            .get_mut("responses")
            .and_then(|r| r.as_object_mut())
            .into_iter()
            .flat_map(|r| r.values_mut());
        for link in responses
            .filter_map(|r| r.get_mut("links").and_then(|l| l.as_object_mut()))
            .flat_map(|links| links.values_mut())
            .filter_map(|link| link.as_object_mut())
        {
            for (snake, camel) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(v) = link.remove(snake) {
                    link.insert(camel.to_owned(), v);
                }
            }
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_name_their_operations_as_openapi_does() {
        let doc = the_document();
        let link = &doc["paths"]["/upload_session"]["post"]["responses"]["201"]["links"]["send"];
        assert_eq!(link["operationId"], "upload_session_append", "{link}");
        assert_eq!(link["parameters"]["id"], "$response.body#/id");
        assert!(link.get("operation_id").is_none());
    }

    #[test]
    fn the_document_is_openapi_3_1_with_every_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1"),
            "{}",
            doc["openapi"]
        );
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/file",
            "/file/{id}",
            "/file/{id}/data",
            "/file/{id}/versions",
            "/file/{id}/version/{version}",
            "/file/{id}/version/{version}/data",
            "/file/{id}/version/{version}/restore",
            "/folder",
            "/folder/{id}",
            "/folder/{id}/contents",
            "/folder/{id}/share",
            "/folder/{id}/unshare",
            "/folder/{id}/members",
            "/delta",
            "/account",
            "/apps",
            "/apps/{key}",
            "/upload_session",
            "/upload_session/{id}",
            "/upload_session/{id}/finish",
        ] {
            assert!(
                paths.contains_key(path),
                "{path} is missing from the document"
            );
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["oauth1"]["scheme"],
            "oauth"
        );
    }
}
