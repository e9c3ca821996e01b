//! Where links go: the edge servers, grouped by data center, from `--edge` or `GET /discovery`,
//! and the plan that spreads links over them (DESIGN.md, "Control plane", HA).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// One data center and its servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataCenter {
    /// Its name (`edge` for addresses given with `--edge`).
    pub name: String,
    /// Its servers' link addresses.
    pub servers: Vec<SocketAddr>,
}

/// What `GET /discovery` answers.
#[derive(Debug, Clone, Deserialize)]
pub struct DiscoveryAnswer {
    /// The data centers.
    #[serde(default)]
    pub data_centers: Vec<DiscoveredDc>,
    /// The edge CA in PEM.
    #[serde(default)]
    pub ca_pem: String,
}

/// One data center in a discovery answer.
#[derive(Debug, Clone, Deserialize)]
pub struct DiscoveredDc {
    /// Its name.
    pub name: String,
    /// Its servers as `IP:PORT` strings.
    #[serde(default)]
    pub servers: Vec<String>,
}

/// `GET /discovery` on the admin API at `api` (no token needed: addresses and CA are public).
pub fn discover(api: &str) -> Result<DiscoveryAnswer> {
    let base = api.trim().trim_end_matches('/');
    let url = if base.starts_with("http://") || base.starts_with("https://") {
        format!("{base}/discovery")
    } else {
        format!("http://{base}/discovery")
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let unreachable = |reason: String| Error::EdgeUnreachable {
        addr: api.to_owned(),
        reason,
    };
    let mut response = agent
        .get(&url)
        .call()
        .map_err(|e| unreachable(e.to_string()))?;
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| unreachable(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| Error::EdgeBadResponse {
        request: "GET /discovery".to_owned(),
        reason: e.to_string(),
    })
}

/// The data centers of a discovery answer, with unparsable addresses skipped (and logged).
pub fn from_discovery(answer: &DiscoveryAnswer) -> Vec<DataCenter> {
    answer
        .data_centers
        .iter()
        .map(|dc| DataCenter {
            name: dc.name.clone(),
            servers: dc
                .servers
                .iter()
                .filter_map(|s| match s.parse() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        tracing::warn!(server = %s, "discovery lists an unusable server address");
                        None
                    }
                })
                .collect(),
        })
        .filter(|dc| !dc.servers.is_empty())
        .collect()
}

/// `--edge A,B,...`: one pseudo data center named `edge` (the edge says the real one when it
/// accepts a link).
pub fn from_flag(addrs: &[String]) -> Result<Vec<DataCenter>> {
    let mut servers = Vec::new();
    for a in addrs.iter().flat_map(|a| a.split(',')) {
        let a = a.trim();
        if a.is_empty() {
            continue;
        }
        servers.push(
            a.parse()
                .map_err(|_| Error::BadEdgeAddress { addr: a.to_owned() })?,
        );
    }
    if servers.is_empty() {
        return Err(Error::NoEdgeServers);
    }
    Ok(vec![DataCenter {
        name: "edge".to_owned(),
        servers,
    }])
}

/// Which server each link uses: link *i* goes to data center *i mod D* and, within it, to
/// server *(i / D + attempt) mod S*, so the first links of a data center land on distinct
/// servers and a failing server is left for the next one on retry.
#[derive(Debug, Clone)]
pub struct LinkPlan {
    dcs: Vec<DataCenter>,
}

impl LinkPlan {
    /// A plan over `dcs`, which must not be empty (nor any of its entries). Warns when the
    /// links cannot be spread over two data centers and distinct servers.
    pub fn new(dcs: Vec<DataCenter>, links: usize) -> Result<LinkPlan> {
        let dcs: Vec<DataCenter> = dcs.into_iter().filter(|d| !d.servers.is_empty()).collect();
        if dcs.is_empty() {
            return Err(Error::NoEdgeServers);
        }
        let total: usize = dcs.iter().map(|d| d.servers.len()).sum();
        if links > 1 && dcs.len() < 2 {
            tracing::warn!(
                data_centers = dcs.len(),
                "only one data center is known; links cannot be spread over two"
            );
        }
        if total < links {
            tracing::warn!(
                servers = total,
                links,
                "fewer edge servers than links; some links share a server"
            );
        }
        Ok(LinkPlan { dcs })
    }

    /// The data center and server for `link` on its `attempt`-th try (from 0).
    pub fn server(&self, link: usize, attempt: usize) -> (&str, SocketAddr) {
        let d = self.dcs.len();
        let dc = &self.dcs[link % d];
        let s = dc.servers[(link / d + attempt) % dc.servers.len()];
        (&dc.name, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dc(name: &str, ports: &[u16]) -> DataCenter {
        DataCenter {
            name: name.into(),
            servers: ports
                .iter()
                .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
                .collect(),
        }
    }

    #[test]
    fn four_links_two_per_dc_on_distinct_servers() {
        let plan = LinkPlan::new(vec![dc("dfw", &[1, 2]), dc("mci", &[3, 4])], 4)
            .unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<(String, u16)> = (0..4)
            .map(|i| {
                let (n, a) = plan.server(i, 0);
                (n.to_owned(), a.port())
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("dfw".into(), 1),
                ("mci".into(), 3),
                ("dfw".into(), 2),
                ("mci".into(), 4)
            ]
        );
        // A retry moves to the other server of the same data center.
        assert_eq!(plan.server(0, 1).1.port(), 2);
    }

    #[test]
    fn flag_addresses_parse() {
        let dcs = from_flag(&["127.0.0.1:1,127.0.0.1:2".into()]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dcs[0].servers.len(), 2);
        assert!(from_flag(&["nope".into()]).is_err());
    }
}
