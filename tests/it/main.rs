//! Integration tests: the engine and the binary against the Graph simulator,
//! over real sockets on loopback.

mod audit;
mod auth;
mod cli;
mod encoding;
mod inputs;
mod journal;
mod pipeline;
mod retries;
mod support;
mod throttling;
