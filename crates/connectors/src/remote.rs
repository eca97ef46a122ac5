//! Where a file connector's folder is: a local path, or a folder on an SFTP server (see [`crate::sftp`]).
//! The csv and jsonl connectors read and write local files either way; for a remote folder these helpers
//! copy a complete remote file in before a read, and publish a written file out after a batch.

use crate::fileio::{self, Emitter, Item};
use crate::sftp::{self, Fetched, Mirror, RemoteFolder};
use ferry_engine::{BuildContext, ConnectorError, ReadItem};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// Splits a connection's options: the connector's own, and the remote folder when `path` is `sftp://…`.
/// SFTP options on a local folder are refused (they would silently do nothing).
pub(crate) fn split(options: &Value, ctx: &BuildContext) -> Result<(Value, Option<Arc<RemoteFolder>>), ConnectorError> {
    let (own, remote_options) = sftp::split_options(options);
    let path = own.get("path").and_then(Value::as_str).unwrap_or_default().to_owned();
    if sftp::is_remote(&path) {
        return Ok((own, Some(Arc::new(RemoteFolder::build(&path, &remote_options, ctx)?))));
    }
    if let Some(name) = remote_options.as_object().and_then(|o| o.keys().next()) {
        return Err(ConnectorError::config(
            format!("connection {}", ctx.connection),
            format!("option {name}: applies to sftp:// folders only, and path {path:?} is a local folder"),
        ));
    }
    Ok((own, None))
}

/// Reads the remote file `name` through a local copy with `read_local` (the connector's reader of a
/// local file), once the file is complete; adds the archiving checkpoint after its records.
pub(crate) fn read<F>(folder: Arc<RemoteFolder>, name: String, checkpoint: Option<Value>, read_local: F) -> BoxStream<'static, Item>
where
    F: FnOnce(&Path, &mut Emitter) -> Result<(), ConnectorError> + Send + 'static,
{
    let url = folder.url(&name);
    let fetch = async move { folder.fetch(&name, checkpoint.as_ref()).await };
    let mut read_local = Some(read_local);
    Box::pin(futures::stream::once(fetch).flat_map(move |fetched| -> BoxStream<'static, Item> {
        match (fetched, read_local.take()) {
            (Err(e), _) => Box::pin(futures::stream::iter([Err(e)])),
            (Ok(Fetched::Nothing(None)), _) => Box::pin(futures::stream::empty()),
            (Ok(Fetched::Nothing(Some(warning))), _) => Box::pin(futures::stream::iter([Ok(ReadItem::Warning(warning))])),
            (Ok(Fetched::File { local, checkpoint }), Some(read_local)) => fileio::blocking_stream(url.clone(), move |em| {
                read_local(&local, em)?;
                // Only after every record of the file: once they are committed, the next run archives it.
                if let Some(cp) = checkpoint {
                    em.emit(Ok(ReadItem::Checkpoint(cp)));
                }
                drop(local);
                Ok(())
            }),
            (Ok(Fetched::File { .. }), None) => Box::pin(futures::stream::empty()),
        }
    }))
}

/// Runs one write (or look-up) on the local copy of a remote file: brings the copy up to date, runs
/// `work` (told whether the copy was replaced, so it drops open handles and key sets built from the old
/// one), and publishes the copy when it changed. A failed publish fails the call (transient): nothing is
/// reported written that the server does not hold.
pub(crate) async fn write_through<T, Fut>(mirror: &mut Mirror, work: impl FnOnce(bool) -> Fut) -> Result<T, ConnectorError>
where
    Fut: std::future::Future<Output = Result<T, ConnectorError>>,
{
    let replaced = mirror.pull().await?;
    let before = mirror.local_len();
    let result = work(replaced).await;
    if result.is_err() {
        mirror.invalidate();
        return result;
    }
    if mirror.local_len() != before {
        mirror.push().await?;
    }
    result
}
