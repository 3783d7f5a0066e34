//! Shared pieces of the fuzz targets: the engine script runner (`script`), also used by
//! `config` to drive an engine built from a fuzzed configuration.

pub mod script;
