//! Where links go: the edge servers, grouped by data center, from `--edge` or `GET /discovery`,
//! and the plan that spreads links over them (four links by default, over two data centers and distinct servers; `docs/operations.md`).

use std::net::SocketAddr;

use crate::admin_client::{DiscoveredDc, Discovery};
use crate::error::{Error, Result};

/// One data center and its servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataCenter {
    /// Its name (`edge` for addresses given with `--edge`).
    pub name: String,
    /// Its servers' link addresses.
    pub servers: Vec<SocketAddr>,
}

/// The data centers of a discovery answer, with unparsable addresses skipped (and logged).
///
/// Where the answer names a data center's nodes (an edge cluster), its servers are taken node
/// by node in turn (the first server of every node, then the second, ...): the plan gives a data
/// center's first links its first servers, so they land on distinct nodes, and a link whose
/// node fails moves to the next server, another node's.
pub fn from_discovery(answer: &Discovery) -> Vec<DataCenter> {
    answer
        .data_centers
        .iter()
        .map(|dc| DataCenter {
            name: dc.name.clone(),
            servers: node_order(dc)
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

/// A data center's servers, interleaved over its nodes when the answer names them (else as
/// listed), each once.
fn node_order(dc: &DiscoveredDc) -> Vec<&String> {
    let mut out: Vec<&String> = Vec::new();
    let most = dc.nodes.iter().map(|n| n.servers.len()).max().unwrap_or(0);
    for i in 0..most {
        for node in &dc.nodes {
            if let Some(s) = node.servers.get(i) {
                out.push(s);
            }
        }
    }
    for s in &dc.servers {
        out.push(s);
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|s| seen.insert(*s));
    out
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

/// Which server each link uses (replicas-contract.md, "Reconnects and data centers").
///
/// Link *i*'s home data center is *i mod D*; within a data center it starts at server
/// *(i / D) mod S*, so the first links of a data center land on distinct servers. The state of
/// one link's search is a [`Placement`]: after a failure it moves to the next server of the
/// same data center; when every server of that data center failed in a row, to the next data
/// center (and round to the home one again after all of them). A link connected away from home
/// is *displaced* and probes its home data center's servers in turn ([`LinkPlan::home_probe`]).
#[derive(Debug, Clone)]
pub struct LinkPlan {
    dcs: Vec<DataCenter>,
    links: usize,
}

/// Where one link is trying to connect, or is connected: a pure state machine driven by
/// [`Placement::failed`], [`Placement::connected`] and [`Placement::moved_home`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    link: usize,
    home: usize,
    dc: usize,
    /// Failures in a row in the current data center.
    failures: usize,
    /// How far past the link's first server of the current data center it is.
    offset: usize,
}

impl Placement {
    /// The data center index the link belongs to.
    pub fn home(&self) -> usize {
        self.home
    }

    /// The data center index it is trying (or connected to).
    pub fn dc(&self) -> usize {
        self.dc
    }

    /// Whether it is (or would connect) outside its home data center.
    pub fn is_displaced(&self) -> bool {
        self.dc != self.home
    }

    /// The attempt on the current target failed: try the next server of the same data center,
    /// or the next data center once all of this one's servers failed in a row.
    pub fn failed(&mut self, plan: &LinkPlan) {
        let servers = plan.dcs[self.dc].servers.len();
        self.failures += 1;
        self.offset += 1;
        if self.failures >= servers && plan.dcs.len() > 1 {
            self.dc = (self.dc + 1) % plan.dcs.len();
            self.failures = 0;
            self.offset = 0;
        }
    }

    /// The link is up on the current target.
    pub fn connected(&mut self) {
        self.failures = 0;
    }

    /// A probe of the home data center succeeded on probe number `probe`
    /// ([`LinkPlan::home_probe`]); the link now lives there.
    pub fn moved_home(&mut self, probe: usize) {
        self.dc = self.home;
        self.failures = 0;
        self.offset = probe;
    }
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
        Ok(LinkPlan { dcs, links })
    }

    /// How many links the plan is for (`--ha-connections`); registration declares it.
    pub fn links(&self) -> usize {
        self.links
    }

    /// The starting placement of `link`: its home data center, its first server there.
    pub fn placement(&self, link: usize) -> Placement {
        let home = link % self.dcs.len();
        Placement {
            link,
            home,
            dc: home,
            failures: 0,
            offset: 0,
        }
    }

    /// The name of data center `dc` (an index from a [`Placement`]).
    pub fn dc_name(&self, dc: usize) -> &str {
        &self.dcs[dc % self.dcs.len()].name
    }

    /// The server a placement targets now.
    pub fn target(&self, p: &Placement) -> SocketAddr {
        self.server_of(p.link, p.dc, p.offset)
    }

    /// The home server to try on probe number `probe` of a displaced link (servers in turn).
    pub fn home_probe(&self, p: &Placement, probe: usize) -> SocketAddr {
        self.server_of(p.link, p.home, probe)
    }

    fn server_of(&self, link: usize, dc: usize, offset: usize) -> SocketAddr {
        let d = self.dcs.len();
        let dc = &self.dcs[dc % d];
        dc.servers[(link / d + offset) % dc.servers.len()]
    }

    /// The data center and server for `link` on its `attempt`-th try (from 0), as if every
    /// earlier attempt failed.
    pub fn server(&self, link: usize, attempt: usize) -> (&str, SocketAddr) {
        let mut p = self.placement(link);
        for _ in 0..attempt {
            p.failed(self);
        }
        (self.dc_name(p.dc), self.target(&p))
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

    fn two_by_two() -> LinkPlan {
        LinkPlan::new(vec![dc("dfw", &[1, 2]), dc("mci", &[3, 4])], 4)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// (data center, port) a placement targets.
    fn at(plan: &LinkPlan, p: &Placement) -> (String, u16) {
        (plan.dc_name(p.dc()).to_owned(), plan.target(p).port())
    }

    #[test]
    fn home_is_index_mod_data_centers() {
        let plan = two_by_two();
        let homes: Vec<usize> = (0..5).map(|i| plan.placement(i).home()).collect();
        assert_eq!(homes, vec![0, 1, 0, 1, 0]);
        assert!((0..5).all(|i| !plan.placement(i).is_displaced()));
    }

    #[test]
    fn failures_try_home_servers_then_another_data_center_then_home_again() {
        let plan = two_by_two();
        let mut p = plan.placement(2); // home dfw, first server :2
        assert_eq!(at(&plan, &p), ("dfw".into(), 2));
        p.failed(&plan);
        assert_eq!(at(&plan, &p), ("dfw".into(), 1), "the other home server");
        assert!(!p.is_displaced());
        p.failed(&plan);
        // Every dfw server failed: mci, starting at this link's server there.
        assert_eq!(at(&plan, &p), ("mci".into(), 4));
        assert!(p.is_displaced());
        p.failed(&plan);
        assert_eq!(at(&plan, &p), ("mci".into(), 3));
        p.failed(&plan);
        // Everything failed: round to home again.
        assert_eq!(at(&plan, &p), ("dfw".into(), 2));
        assert!(!p.is_displaced());
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let plan = two_by_two();
        let mut p = plan.placement(0);
        p.failed(&plan); // dfw :2
        p.connected();
        p.failed(&plan); // link lost: dfw :1, still home (one failure since the success)
        assert_eq!(at(&plan, &p), ("dfw".into(), 1));
        assert!(!p.is_displaced());
    }

    #[test]
    fn displaced_link_probes_home_servers_in_turn_and_moves_back() {
        let plan = two_by_two();
        let mut p = plan.placement(1); // home mci :3
        p.failed(&plan);
        p.failed(&plan);
        p.connected();
        assert_eq!(at(&plan, &p), ("dfw".into(), 1));
        assert!(p.is_displaced());
        let probes: Vec<u16> = (0..3).map(|n| plan.home_probe(&p, n).port()).collect();
        assert_eq!(probes, vec![3, 4, 3]);
        p.moved_home(1);
        assert!(!p.is_displaced());
        assert_eq!(
            at(&plan, &p),
            ("mci".into(), 4),
            "where the probe succeeded"
        );
    }

    #[test]
    fn one_data_center_never_displaces() {
        let plan = LinkPlan::new(vec![dc("edge", &[1, 2, 3])], 2).unwrap_or_else(|e| panic!("{e}"));
        let mut p = plan.placement(1);
        let mut ports = Vec::new();
        for _ in 0..6 {
            ports.push(plan.target(&p).port());
            p.failed(&plan);
            assert!(!p.is_displaced());
        }
        assert_eq!(ports, vec![2, 3, 1, 2, 3, 1]);
    }

    #[test]
    fn three_data_centers_are_tried_in_order() {
        let plan = LinkPlan::new(vec![dc("a", &[1]), dc("b", &[2]), dc("c", &[3])], 3)
            .unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<(String, u16)> = (0..4)
            .map(|n| {
                let (name, addr) = plan.server(1, n);
                (name.to_owned(), addr.port())
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("b".into(), 2),
                ("c".into(), 3),
                ("a".into(), 1),
                ("b".into(), 2)
            ]
        );
    }

    #[test]
    fn discovered_servers_go_node_by_node() {
        let answer: Discovery = serde_json::from_str(
            r#"{"data_centers": [{"name": "dfw",
                 "servers": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:9"],
                 "nodes": [{"id": "a", "servers": ["127.0.0.1:1", "127.0.0.1:2"]},
                           {"id": "b", "servers": ["127.0.0.1:3"]}]},
                {"name": "mci", "servers": ["127.0.0.1:4", "bad"]}],
                "ca_pem": "x", "node": "a", "nodes": []}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let dcs = from_discovery(&answer);
        let ports = |i: usize| dcs[i].servers.iter().map(|s| s.port()).collect::<Vec<_>>();
        assert_eq!(ports(0), [1, 3, 2, 9], "nodes in turn, then the rest");
        assert_eq!(
            ports(1),
            [4],
            "an old answer as listed, bad addresses skipped"
        );
        let plan = LinkPlan::new(dcs, 4).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (plan.server(0, 0).1.port(), plan.server(2, 0).1.port()),
            (1, 3),
            "a data center's two links on distinct nodes"
        );
    }

    #[test]
    fn flag_addresses_parse() {
        let dcs = from_flag(&["127.0.0.1:1,127.0.0.1:2".into()]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dcs[0].servers.len(), 2);
        assert!(from_flag(&["nope".into()]).is_err());
    }
}
