//! The tests of `tenancy_secrets.rs` with every workspace's store in a schema of one PostgreSQL database;
//! this binary's name is what makes `tenancy_secrets.rs` pick it.

include!("tenancy_secrets.rs");
