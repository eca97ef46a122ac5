//! Where a test's workspaces keep their state: SQLite files, or schemas of one PostgreSQL database.

/// This binary's backend: a test binary named `…_on_postgres` keeps the workspaces in one PostgreSQL
/// database (its file includes the SQLite one).
pub fn on_postgres() -> bool {
    env!("CARGO_CRATE_NAME").ends_with("on_postgres")
}

/// A test's state stores: SQLite files in its folder, or schemas of one PostgreSQL database (one per
/// store name, dropped after the test).
pub struct Stores {
    pub dir: tempfile::TempDir,
    schemas: std::sync::Mutex<std::collections::BTreeMap<String, ferry_engine::store::postgres::ScratchSchema>>,
}

impl Default for Stores {
    fn default() -> Self {
        Self::new()
    }
}

impl Stores {
    pub fn new() -> Stores {
        Stores { dir: tempfile::tempdir().unwrap(), schemas: Default::default() }
    }

    /// The `[state]` settings of the store called `name`.
    pub fn state(&self, name: &str) -> String {
        if !on_postgres() {
            return format!("path = \"{name}-state.db\"");
        }
        let mut schemas = self.schemas.lock().unwrap();
        let s = schemas.entry(name.to_owned()).or_insert_with(|| ferry_engine::store::postgres::ScratchSchema::new(name));
        format!("url = \"{}\"\nschema = \"{}\"", s.url, s.schema)
    }
}
