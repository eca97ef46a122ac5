//! Ferry's engine: the connector contract, flows (source stream → mapping → target stream), change
//! detection by content hash, the durable state store, and runs.
//!
//! Where things happen: [`run`] moves records through a flow; [`hash`] decides what changed; [`store`]
//! remembers what was written where; [`mapping`] reshapes records per business; [`connector`] is the
//! contract every system implements.

pub mod alerts;
pub mod backoff;
mod carried_counts;
pub mod config;
pub mod connector;
pub mod create_once;
pub mod diff;
pub mod duplicates;
pub mod hash;
pub mod isolate;
pub mod lease;
pub mod mapping;
pub mod retention;
pub mod retire_guard;
pub mod run;
pub mod schedule;
pub mod secrets;
pub mod store;
pub mod targeted;
pub mod workspace;
pub mod written_changes;

pub use config::{Config, FlowConfig, OnMissing};
pub use create_once::OrderPolicy;
pub use connector::{
    BuildContext, CheckReport, Compaction, Connector, ConnectorError, ConnectorFactory, Description, ErrorKind, ReadItem, ReadMode,
    ReadRequest, RecordFailure, Registry, RetireMode, SourceRecord, StreamCapability, WebhookAuth, WriteAction, WriteMode, WriteOutcome,
    WriteRecord, Written, parse_options,
};
pub use mapping::{Mapping, MappingConfig, MappingError, Unmapped};
pub use run::{Flow, Progress, Replay, RunOptions, RunReport, run_flow};
pub use store::{PgStore, SqliteStore, StateStore, Store};
pub use workspace::{Workspace, holder_id};
