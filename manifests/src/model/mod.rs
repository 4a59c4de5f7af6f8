//! The validated object model, serialized in Kubernetes shape. Values of these types are only
//! handed out inside [`crate::Valid`], built by validation.

pub mod config;
pub mod jobs;
pub mod object;
pub mod pod;
pub mod probe;
pub mod scheduling;
pub mod security;
pub mod service;
pub mod volume;
pub mod workloads;
