//! The `capstan` binary's command-line tests. One binary, one module a command.

#[path = "../../../tests/support/lib.rs"]
mod support;

mod apiserver_cli;
mod check_cli;
mod image;
mod in_cluster;
mod leader_election;
mod new_cli;
mod render_cli;
mod sharding;
