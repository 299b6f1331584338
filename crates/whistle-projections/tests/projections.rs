//! Tests of whistle-projections: summaries against hand-computed figures. (Rebuild
//! equality over a generated history runs in the e2e suite, which drives the real command
//! pipeline: tests/e2e/projections.rs.)

mod projections {
    pub mod summary;
}
