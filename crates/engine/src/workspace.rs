//! A loaded configuration: connections built on first use, the state store, flows ready to run.

use crate::config::{Config, toml_to_json};
use crate::connector::{BuildContext, Connector, ConnectorError, Registry};
use crate::mapping::Mapping;
use crate::run::{Flow, Progress, RunError, RunOptions, RunReport, run_flow};
use crate::store::{StateStore, StoreError, open_configured};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct Workspace {
    pub config: Config,
    registry: Registry,
    store: Arc<dyn StateStore>,
    connections: Mutex<HashMap<String, Arc<dyn Connector>>>,
}

impl Workspace {
    /// Opens the configured state store (`[state]`: SQLite by default, or PostgreSQL).
    pub async fn open(config: Config, registry: Registry) -> Result<Workspace, StoreError> {
        let store = open_configured(&config).await?;
        Ok(Workspace::with_store(config, registry, store))
    }

    pub fn with_store(config: Config, registry: Registry, store: Arc<dyn StateStore>) -> Workspace {
        Workspace { config, registry, store, connections: Mutex::new(HashMap::new()) }
    }

    pub fn store(&self) -> &dyn StateStore {
        self.store.as_ref()
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The named connection, built once.
    pub fn connection(&self, name: &str) -> Result<Arc<dyn Connector>, ConnectorError> {
        let mut built = self.connections.lock().expect("connection cache lock");
        if let Some(c) = built.get(name) {
            return Ok(c.clone());
        }
        let conf = self.config.connections.get(name).ok_or_else(|| {
            ConnectorError::config(format!("connection {name}"), "is not defined in the config's [connections]")
        })?;
        let ctx = BuildContext { connection: name.to_owned(), base_dir: self.config.base_dir.clone(), timezone: self.config.defaults.timezone.clone() };
        let connector = self.registry.build(&conf.kind, &toml_to_json(&conf.options), &ctx)?;
        built.insert(name.to_owned(), connector.clone());
        Ok(connector)
    }

    pub fn flow(&self, name: &str) -> Result<Flow, RunError> {
        let setup = |message: String| RunError::Setup { flow: name.to_owned(), message };
        let config = self.config.flow(name).map_err(setup)?.clone();
        let mapping = Mapping::compile(&config.mapping, config.stream).map_err(|e| setup(format!("mapping {e}")))?;
        let source = self.connection(&config.source).map_err(|e| setup(e.to_string()))?;
        let target = self.connection(&config.target).map_err(|e| setup(e.to_string()))?;
        Ok(Flow { name: name.to_owned(), config, source, target, mapping })
    }

    pub async fn sync(&self, name: &str, options: &RunOptions, progress: &dyn Progress) -> Result<RunReport, RunError> {
        let flow = self.flow(name)?;
        run_flow(&flow, self.store.as_ref(), options, progress).await
    }
}

/// `host:pid`, who holds a flow's lease.
pub fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}
