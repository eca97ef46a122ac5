//! Ferry's engine: the connector contract, flows (source stream → mapping → target stream), change
//! detection by content hash, the durable state store, and runs.

pub mod connector;
pub mod mapping;

pub use connector::{
    BuildContext, CheckReport, Connector, ConnectorError, ConnectorFactory, Description, ErrorKind, ReadItem, ReadMode,
    ReadRequest, RecordFailure, Registry, RetireMode, SourceRecord, StreamCapability, WriteAction, WriteMode, WriteOutcome,
    WriteRecord, Written,
};
pub use mapping::{Mapping, MappingConfig, MappingError, Unmapped};
