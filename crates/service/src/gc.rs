//! Garbage collection of stored objects, the blob-store half: for each
//! workspace, objects found in its container that the ledger does not know
//! are recorded (and charged); then the metadata store applies history
//! retention and marks unreferenced objects older than the grace period
//! (`stacksync_metastore::GcPlan`); the marked objects are deleted from the
//! container and only then forgotten by the ledger, which refunds their
//! bytes. An interrupted collection leaves marks the next one finishes.

use std::time::Duration;

use stacksync_proto::{ChunkId, WorkspaceId};

use crate::error::{BlobContext, ServiceError};
use crate::{Service, container_name};

/// How a collection runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcSettings {
    /// Objects recorded more recently than this are never collected, so an
    /// upload that is not committed yet survives (default 1 hour).
    pub grace: Duration,
    /// Versions replaced longer ago than this leave the history and stop
    /// referencing their chunks (default 30 days). Every item's latest
    /// version is kept whatever its age.
    pub retention: Duration,
    /// Report what would be freed; change nothing.
    pub dry_run: bool,
}

impl Default for GcSettings {
    fn default() -> Self {
        GcSettings {
            grace: Duration::from_secs(3600),
            retention: Duration::from_secs(30 * 24 * 3600),
            dry_run: false,
        }
    }
}

/// What a collection did (or, on a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Workspaces looked at.
    pub workspaces: u64,
    /// Objects found in containers without a ledger row, now recorded.
    pub adopted: u64,
    /// Versions dropped from history by the retention rule.
    pub pruned_versions: u64,
    /// Objects deleted from the blob store.
    pub deleted_objects: u64,
    /// Bytes those objects occupied (refunded to their owners' quota).
    pub freed_bytes: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// Milliseconds since the Unix epoch, now (the store's clock, as commits
/// stamp versions and the ledger stamps objects).
fn now_ms() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Service {
    /// Collects garbage in every workspace; see the module docs.
    pub async fn collect_garbage(&self, settings: GcSettings) -> Result<GcReport, ServiceError> {
        let mut report = GcReport {
            dry_run: settings.dry_run,
            ..GcReport::default()
        };
        for (ws, container) in self.store().workspace_containers().await? {
            self.collect_workspace(ws, &container, settings, &mut report)
                .await?;
            report.workspaces += 1;
        }
        Ok(report)
    }

    async fn collect_workspace(
        &self,
        ws: WorkspaceId,
        container: &str,
        settings: GcSettings,
        report: &mut GcReport,
    ) -> Result<(), ServiceError> {
        let container = container_name(container)?;
        if !settings.dry_run {
            report.adopted += self.adopt_unknown(ws, &container).await?;
        }
        let now = now_ms();
        let plan = self
            .store()
            .mark_garbage(
                ws,
                now.saturating_sub(millis(settings.grace)),
                now.saturating_sub(millis(settings.retention)),
                settings.dry_run,
            )
            .await?;
        report.pruned_versions += plan.pruned_versions;
        if settings.dry_run {
            report.deleted_objects += plan.objects.len() as u64;
            report.freed_bytes += plan.objects.iter().map(|o| o.size).sum::<u64>();
            return Ok(());
        }
        let mut gone: Vec<ChunkId> = Vec::with_capacity(plan.objects.len());
        for o in &plan.objects {
            match self.blobs().delete(&container, &o.id).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    // Left marked: the next collection deletes it.
                    tracing::warn!(object = %o.id, %container, error = %e, "object not collected");
                    continue;
                }
            }
            gone.push(o.id);
        }
        report.deleted_objects += gone.len() as u64;
        report.freed_bytes += self.store().forget_objects(ws, &gone).await?;
        Ok(())
    }

    /// Records the objects of `container` the ledger lacks (written to
    /// Swift directly and never committed, or stored before the ledger
    /// existed): they occupy storage, so they count, and once older than
    /// the grace period they can be collected like any other.
    async fn adopt_unknown(
        &self,
        ws: WorkspaceId,
        container: &stacksync_blobstore::ContainerName,
    ) -> Result<u64, ServiceError> {
        let listed = match self.blobs().list(container).await {
            Ok(listed) => listed,
            // A workspace whose container was never created holds nothing.
            Err(e) if e.is_not_found() => return Ok(0),
            Err(e) => return Err(e).blob(|| format!("listing {container}")),
        };
        let known: std::collections::HashSet<ChunkId> = self
            .store()
            .objects_of(ws)
            .await?
            .into_iter()
            .map(|o| o.id)
            .collect();
        let mut adopted = 0;
        for id in listed.into_iter().filter(|id| !known.contains(id)) {
            let size = match self.blobs().head(container, &id).await {
                Ok(info) => info.size,
                // Deleted since the listing.
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e).blob(|| format!("looking up {id} in {container}")),
            };
            if self
                .store()
                .record_object(ws, id, size, None, stacksync_metastore::Charge::Always)
                .await?
            {
                adopted += 1;
            }
        }
        Ok(adopted)
    }
}
