//! The `capstan` binary, run as a user runs it: one module a command, and the replicas of a
//! sharded or leader-elected install. These are the suite's longest tests (scaffolded projects
//! built with cargo, a thousand WebApps, a 30 s API outage); their names sort them near the start
//! of the run, so the rest of the suite fills the cores while they wait.

mod apiserver;
mod check;
mod image;
mod in_cluster;
mod leader_election;
mod new;
mod render;
mod sharding;
