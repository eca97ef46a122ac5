//! The engine suite of `engine.rs`, on a PostgreSQL state store (each test in a scratch schema of its own,
//! dropped afterwards): this binary's name is what makes `engine.rs` pick the backend.

include!("engine.rs");
