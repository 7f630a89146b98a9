//! How much of a wire message a page of the change feed may fill.
//!
//! A page travels as one message of at most
//! [`stacksync_proto::wire::MAX_MESSAGE_BYTES`], and a page of 1,000 files
//! of a few hundred chunks each is larger than that: the peer would refuse
//! it and a device could never list the workspace. So a page stops early,
//! with `has_more`, once its items' estimated size reaches [`PAGE_BYTES`];
//! its cursor is its last item's revision, as for any page, so the next
//! page starts at the first item left out.

use stacksync_proto::ItemMeta;
use stacksync_proto::wire::MAX_MESSAGE_BYTES;

/// The most a page's items may weigh by [`wire_bytes`]: half a message,
/// which leaves the envelope and the page's own fields ample room. A
/// single item heavier than this still makes a page of its own: it cannot
/// be split, and leaving it out would stop the feed there.
pub(crate) const PAGE_BYTES: usize = MAX_MESSAGE_BYTES / 2;

/// Bytes of an item's fields other than its free text and chunks, at their
/// longest in JSON with their names: four ids of 36 characters, a 64-digit
/// hash, six numbers of up to 20 digits, the status word. About 500.
const ITEM_FIXED_BYTES: usize = 1024;

/// Bytes of one chunk at its longest in JSON: two 64-digit ids, a size, an
/// offset and a length with their field names. About 220.
const CHUNK_BYTES: usize = 256;

/// An upper bound of the bytes `item` takes in a page on the wire: every
/// fixed field at its longest, every byte of the free-text fields (name
/// and MIME type) escaped as `\uXXXX`, and the sealed record as its hex
/// (two characters a byte; its field name fits in the fixed bytes). Cheap,
/// so that a listing does not encode every item twice.
pub(crate) fn wire_bytes(item: &ItemMeta) -> usize {
    let text = item.name.as_str().len() + item.mimetype.as_ref().map_or(0, String::len);
    let record = item.record.as_ref().map_or(0, |r| 2 * r.len());
    ITEM_FIXED_BYTES + 6 * text + CHUNK_BYTES * item.chunks.len() + record
}

#[cfg(test)]
mod tests {
    use super::*;
    use stacksync_proto::{
        ChunkId, ChunkRef, ContentHash, DeviceId, ItemId, ItemName, ItemStatus, PackSpan,
        WorkspaceId,
    };

    /// An item with every field at its longest JSON form.
    fn heaviest(chunks: usize, name: &str, mimetype: &str) -> ItemMeta {
        let span = PackSpan {
            pack: ChunkId([0xff; 32]),
            offset: u64::MAX,
            len: u32::MAX,
            base: None,
        };
        ItemMeta {
            id: ItemId::new(),
            workspace: WorkspaceId::new(),
            parent: Some(ItemId::new()),
            name: ItemName::new(name.to_string()).unwrap(),
            is_folder: false,
            mimetype: Some(mimetype.into()),
            status: ItemStatus::Renamed,
            version: u64::MAX,
            content_hash: Some(ContentHash([0xff; 32])),
            size: u64::MAX,
            client_modified: i64::MIN,
            server_modified: i64::MIN,
            device: DeviceId::new(),
            revision: u64::MAX,
            chunks: vec![
                ChunkRef {
                    id: ChunkId([0xff; 32]),
                    size: u32::MAX,
                    span: Some(span),
                };
                chunks
            ],
            record: None,
        }
    }

    #[test]
    fn the_estimate_bounds_the_encoded_item() {
        // The largest record a version of `chunks` chunks may carry.
        let sealed = |mut item: ItemMeta| {
            let limit = stacksync_proto::ProposedItem::record_limit(item.chunks.len());
            item.record = Some(vec![0xff; limit]);
            item
        };
        for item in [
            heaviest(0, "a", ""),
            heaviest(1, "\"\\\"\\", "\u{1}\u{2}\"\\"),
            heaviest(3000, &"é".repeat(100), &"\u{7f}".repeat(200)),
            sealed(heaviest(0, "a", "")),
            sealed(heaviest(3000, &"é".repeat(100), "")),
        ] {
            let encoded = serde_json::to_vec(&item).unwrap().len();
            assert!(
                encoded <= wire_bytes(&item),
                "{encoded} > {}",
                wire_bytes(&item)
            );
        }
    }

    /// A workspace of 30 files of 20 chunks and, among them, one of 200,
    /// listed from 0 in pages of at most `budget` bytes: a page stops at
    /// the budget, the heavy file makes a page alone, and the pages
    /// together are the listing a single page gives.
    async fn pages_stop_at_their_budget(postgres: bool) {
        use crate::NewUser;
        use crate::testing::TestDb;
        use stacksync_proto::{CommitRequest, EncryptionMode, ProposedItem};

        let Some(db) = TestDb::new(postgres).await else {
            return;
        };
        let store = &db.store;
        let user = store
            .create_user(NewUser {
                email: "a@x.org".into(),
                name: "a".into(),
                password_hash: "-".into(),
                quota_limit: 1 << 40,
                storage_user: None,
            })
            .await
            .unwrap();
        let device = store
            .upsert_device(user.id, None, "laptop", "", "", None)
            .await
            .unwrap();
        let ws = store
            .create_workspace(user.id, "ws", false, EncryptionMode::Plain)
            .await
            .unwrap();
        let file = |k: u16| {
            let n = if k == 13 { 200 } else { 20 };
            let chunks: Vec<ChunkRef> = (0..n)
                .map(|c: u16| {
                    let mut id = [k as u8; 32];
                    id[1..3].copy_from_slice(&c.to_le_bytes());
                    ChunkRef::whole(ChunkId(id), 100)
                })
                .collect();
            ProposedItem {
                id: ItemId::new(),
                parent: None,
                name: ItemName::new(format!("f{k}")).unwrap(),
                is_folder: false,
                mimetype: None,
                status: ItemStatus::New,
                version: 1,
                content_hash: Some(ContentHash([k as u8; 32])),
                size: 100 * u64::from(n),
                client_modified: 0,
                chunks,
                record: None,
            }
        };
        store
            .commit(&CommitRequest {
                workspace: ws.id,
                device: device.id,
                items: (0..30).map(file).collect(),
            })
            .await
            .unwrap();
        let whole = store.get_changes(ws.id, 0, 1000).await.unwrap();
        assert!(whole.items.len() == 30 && !whole.has_more);

        let budget = 25_000;
        let (mut since, mut listed, mut pages) = (0, Vec::new(), Vec::new());
        loop {
            let page = store
                .changes_within(ws.id, since, 1000, budget)
                .await
                .unwrap();
            let bytes: usize = page.items.iter().map(wire_bytes).sum();
            assert!(bytes <= budget || page.items.len() == 1, "{bytes} bytes");
            assert_eq!(page.cursor, page.items.last().unwrap().revision);
            pages.push(page.items.len());
            since = page.cursor;
            listed.extend(page.items);
            if !page.has_more {
                break;
            }
        }
        assert_eq!(listed, whole.items);
        assert!(pages.len() > 7, "pages of {pages:?}");
        let heavy = listed.iter().position(|m| m.chunks.len() == 200).unwrap();
        let mut first = 0;
        let alone = pages.iter().any(|&n| {
            first += n;
            n == 1 && first - 1 == heavy
        });
        assert!(alone, "the heavy file shares a page: {pages:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_pages_stop_at_their_budget() {
        pages_stop_at_their_budget(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_pages_stop_at_their_budget() {
        pages_stop_at_their_budget(true).await;
    }
}
