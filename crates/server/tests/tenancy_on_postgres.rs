//! The tenancy suite of `tenancy.rs` with every workspace in a schema of one PostgreSQL database (schema
//! per workspace: see docs/architecture.md); this binary's name is what makes `tenancy.rs` pick it.

include!("tenancy.rs");
