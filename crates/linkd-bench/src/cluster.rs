//! Several linkd processes on one database, each on its own port: what
//! `--instances N` runs. With one instance it is the single server of
//! every other scenario.

use std::net::SocketAddr;
use std::path::Path;

use crate::server::{self, RateLimits, ServerProcess};

pub struct Cluster {
    pub servers: Vec<ServerProcess>,
}

impl Cluster {
    /// Starts `instances` linkd processes over `database_url`, one after
    /// another (each migrates or finds the schema migrated, and loads the
    /// shared signing keys, as instances do when an operator starts them).
    pub async fn start(
        binary: &Path,
        database_url: &str,
        instances: usize,
        poll_interval: u32,
        logs: &Path,
        label: &str,
        limits: RateLimits,
    ) -> anyhow::Result<Cluster> {
        let mut servers = Vec::with_capacity(instances);
        for i in 0..instances.max(1) {
            let name = if instances > 1 {
                format!("{label}-{i}")
            } else {
                label.to_string()
            };
            match server::spawn_linkd(binary, database_url, poll_interval, logs, &name, limits)
                .await
            {
                Ok(server) => servers.push(server),
                Err(e) => {
                    for server in servers {
                        server.stop().await.ok();
                    }
                    return Err(e);
                }
            }
        }
        Ok(Cluster { servers })
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|s| s.addr).collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.servers.iter().map(ServerProcess::pid).collect()
    }

    pub fn base_urls(&self) -> Vec<String> {
        self.servers.iter().map(ServerProcess::base_url).collect()
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        let mut first_error = None;
        for server in self.servers {
            if let Err(e) = server.stop().await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Resident memory of several processes together, in KiB.
pub fn rss_kib(pids: &[u32]) -> Option<u64> {
    pids.iter().map(|&pid| crate::machine::rss_kib(pid)).sum()
}
