//! Where links go: the edge servers, grouped by data center, from `--edge` or `GET /discovery`,
//! and the plan that spreads links over them (four links by default, over two data centers and distinct servers; `docs/operations.md`).
//!
//! A link's first server is fixed by its index ([`LinkPlan::placement`]). A link placed again
//! (its server failed or went away, or its edge node asked it to move) goes **by node**
//! ([`choose_server`]): to a server of its data center on a node that holds none of this
//! connector's other live links there (failing that, the node with fewest), never to a node it
//! just left or failed on while another is known. Where discovery names no nodes (`--edge`, an
//! edge without a cluster) each server counts as a node of its own.

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
    /// The node of each server, in the order of `servers`, from a cluster's discovery answer;
    /// shorter (or empty strings) where unknown.
    pub nodes: Vec<String>,
}

impl DataCenter {
    /// The node of server `i`: its node ID when discovery named it, else the server's address
    /// (each server a node of its own).
    fn node_key(&self, i: usize) -> String {
        match self.nodes.get(i) {
            Some(n) if !n.is_empty() => n.clone(),
            _ => self
                .servers
                .get(i)
                .map(|a| a.to_string())
                .unwrap_or_default(),
        }
    }

    /// The node serving `addr` (as [`DataCenter::node_key`]); the address itself when it is
    /// not one of this data center's servers (any more).
    pub fn node_of(&self, addr: SocketAddr) -> String {
        match self.servers.iter().position(|s| *s == addr) {
            Some(i) => self.node_key(i),
            None => addr.to_string(),
        }
    }

    /// Whether discovery named the node of any server (an edge cluster).
    pub fn knows_nodes(&self) -> bool {
        self.nodes.iter().any(|n| !n.is_empty())
    }
}

/// Which server of `dc` a link goes to when it is placed again (placement by node): among
/// the servers whose node is not in `avoid` (the nodes it is leaving or just failed on), one
/// on the node holding the fewest of `held` (the nodes of this connector's other live links in
/// `dc`, one entry per link), ties going to the first in turn from server `start`. When every
/// server's node is in `avoid`, the same choice over all of them (a data center of one node
/// has nowhere else). `None` only for a data center without servers.
pub fn choose_server(
    dc: &DataCenter,
    held: &[String],
    avoid: &[String],
    start: usize,
) -> Option<SocketAddr> {
    let n = dc.servers.len();
    if n == 0 {
        return None;
    }
    let in_turn: Vec<usize> = (0..n).map(|k| (start + k) % n).collect();
    let open: Vec<usize> = in_turn
        .iter()
        .copied()
        .filter(|&i| !avoid.contains(&dc.node_key(i)))
        .collect();
    let pool = if open.is_empty() { in_turn } else { open };
    pool.into_iter()
        .min_by_key(|&i| {
            let node = dc.node_key(i);
            held.iter().filter(|h| **h == node).count()
        })
        .map(|i| dc.servers[i])
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
        .map(|dc| {
            let node_of = |s: &str| {
                dc.nodes
                    .iter()
                    .find(|n| n.servers.iter().any(|x| x == s))
                    .map(|n| n.id.clone())
                    .unwrap_or_default()
            };
            let (servers, nodes) = node_order(dc)
                .iter()
                .filter_map(|s| match s.parse::<SocketAddr>() {
                    Ok(a) => Some((a, node_of(s))),
                    Err(_) => {
                        tracing::warn!(server = %s, "discovery lists an unusable server address");
                        None
                    }
                })
                .unzip();
            DataCenter {
                name: dc.name.clone(),
                servers,
                nodes,
            }
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
        nodes: Vec::new(),
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
    /// The nodes of the current data center it left or failed on since it was last connected
    /// (its next server is chosen by node while this is not empty, [`choose_server`]).
    avoid: Vec<String>,
    /// The server of the current attempt or connection.
    at: Option<SocketAddr>,
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

    /// The server of the current attempt or connection, once [`Placement::trying`] said it.
    pub fn at(&self) -> Option<SocketAddr> {
        self.at
    }

    /// The link is about to try `addr` (from [`LinkPlan::target`]).
    pub fn trying(&mut self, addr: SocketAddr) {
        self.at = Some(addr);
    }

    /// The attempt on the current target failed (or the link on it was lost): the next server
    /// of the same data center, chosen by node away from this one, or the next data center
    /// once as many attempts as it has servers failed in a row.
    pub fn failed(&mut self, plan: &LinkPlan) {
        let servers = plan.dcs[self.dc].servers.len();
        self.failures += 1;
        self.leave(plan);
        self.offset += 1;
        if self.failures >= servers && plan.dcs.len() > 1 {
            self.dc = (self.dc + 1) % plan.dcs.len();
            self.failures = 0;
            self.offset = 0;
            self.avoid.clear();
        }
    }

    /// The link leaves its current server's node without a failure (its edge node asked it to
    /// move): its next server, in the same data center, is chosen by node away from it.
    /// Returns that node.
    pub fn leave(&mut self, plan: &LinkPlan) -> String {
        let left = self.at.take().unwrap_or_else(|| plan.target(self, &[]));
        let dc = &plan.dcs[self.dc];
        let node = dc.node_of(left);
        if !self.avoid.contains(&node) {
            self.avoid.push(node.clone());
        }
        // Every node avoided: start over from the last one (a data center of one node).
        if (0..dc.servers.len()).all(|i| self.avoid.contains(&dc.node_key(i))) {
            self.avoid = vec![node.clone()];
        }
        node
    }

    /// The link is up on the current target.
    pub fn connected(&mut self) {
        self.failures = 0;
        self.avoid.clear();
    }

    /// A probe of the home data center succeeded on probe number `probe`
    /// ([`LinkPlan::home_probe`]) at `addr`; the link now lives there.
    pub fn moved_home(&mut self, probe: usize, addr: SocketAddr) {
        self.dc = self.home;
        self.failures = 0;
        self.offset = probe;
        self.avoid.clear();
        self.at = Some(addr);
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
            avoid: Vec::new(),
            at: None,
        }
    }

    /// The name of data center `dc` (an index from a [`Placement`]).
    pub fn dc_name(&self, dc: usize) -> &str {
        &self.dcs[dc % self.dcs.len()].name
    }

    /// The data center `dc` (an index from a [`Placement`]).
    pub fn data_center(&self, dc: usize) -> &DataCenter {
        &self.dcs[dc % self.dcs.len()]
    }

    /// Whether discovery named the edge's nodes (an edge cluster): links then move off a node
    /// that asks them to, before it closes them.
    pub fn knows_nodes(&self) -> bool {
        self.dcs.iter().any(DataCenter::knows_nodes)
    }

    /// The server a placement targets now: its server by index while it has left no node,
    /// else [`choose_server`] with `held`, the nodes of the connector's other live links in
    /// the placement's data center.
    pub fn target(&self, p: &Placement, held: &[String]) -> SocketAddr {
        let fixed = self.server_of(p.link, p.dc, p.offset);
        if p.avoid.is_empty() {
            return fixed;
        }
        let d = self.dcs.len();
        choose_server(&self.dcs[p.dc % d], held, &p.avoid, p.link / d + p.offset).unwrap_or(fixed)
    }

    /// This plan with the servers of a newer discovery answer: each data center it knows takes
    /// the servers (and nodes) the answer gives it; one the answer leaves out or empties keeps
    /// its last servers, and data centers the answer adds are not used (link placements name
    /// data centers by their index here).
    pub fn refreshed(&self, dcs: Vec<DataCenter>) -> LinkPlan {
        let mut out = self.clone();
        for dc in &mut out.dcs {
            if let Some(new) = dcs
                .iter()
                .find(|n| n.name == dc.name && !n.servers.is_empty())
            {
                dc.servers = new.servers.clone();
                dc.nodes = new.nodes.clone();
            }
        }
        out
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
        (self.dc_name(p.dc), self.target(&p, &[]))
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
            nodes: Vec::new(),
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
        (plan.dc_name(p.dc()).to_owned(), plan.target(p, &[]).port())
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
        p.moved_home(1, plan.home_probe(&p, 1));
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
            ports.push(plan.target(&p, &[]).port());
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

    fn dcs_nodes(plan: &LinkPlan) -> Vec<String> {
        let dc = plan.data_center(0);
        dc.servers
            .iter()
            .map(|a| {
                let n = dc.node_of(*a);
                if n == a.to_string() { String::new() } else { n }
            })
            .collect()
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
        assert_eq!(dcs_nodes(&plan), ["a", "b", "a", ""], "each server's node");
    }

    /// A data center whose servers (ports) sit on the given nodes.
    fn dc_on(name: &str, servers: &[(u16, &str)]) -> DataCenter {
        DataCenter {
            name: name.into(),
            servers: servers
                .iter()
                .map(|(p, _)| SocketAddr::from(([127, 0, 0, 1], *p)))
                .collect(),
            nodes: servers.iter().map(|(_, n)| (*n).to_owned()).collect(),
        }
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_link_placed_again_goes_to_a_node_without_the_connectors_other_links() {
        let dc = dc_on("dfw", &[(1, "a"), (2, "b"), (3, "c"), (4, "a")]);
        let pick = |held: &[&str], avoid: &[&str], start| {
            choose_server(&dc, &names(held), &names(avoid), start).map(|a| a.port())
        };
        // Leaving a, the other link on b: c, whatever the turn.
        for start in 0..4 {
            assert_eq!(pick(&["b"], &["a"], start), Some(3), "start {start}");
        }
        // No node is free: the one with fewest of the other links.
        assert_eq!(pick(&["b", "c", "c"], &["a"], 0), Some(2));
        // Nothing held: the first in turn that is not the node left.
        assert_eq!(pick(&[], &["a"], 3), Some(2));
        assert_eq!(pick(&[], &["b"], 1), Some(3));
    }

    #[test]
    fn a_data_center_of_one_node_is_chosen_again_when_it_is_all_there_is() {
        let dc = dc_on("dfw", &[(1, "a"), (2, "a")]);
        let got = choose_server(&dc, &[], &names(&["a"]), 1).map(|a| a.port());
        assert_eq!(got, Some(2), "every node avoided: the turn decides");
        let empty = DataCenter {
            name: "x".into(),
            servers: Vec::new(),
            nodes: Vec::new(),
        };
        assert_eq!(choose_server(&empty, &[], &[], 0), None);
    }

    #[test]
    fn moved_links_stay_on_distinct_nodes_through_a_rolling_restart() {
        // Three nodes, each with one server in each of two data centers.
        let plan = LinkPlan::new(
            vec![
                dc_on("dfw", &[(1, "n0"), (2, "n1"), (3, "n2")]),
                dc_on("mci", &[(4, "n0"), (5, "n1"), (6, "n2")]),
            ],
            4,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut places: Vec<Placement> = (0..4).map(|i| plan.placement(i)).collect();
        let mut at: Vec<SocketAddr> = Vec::new();
        for p in &mut places {
            let a = plan.target(p, &[]);
            p.trying(a);
            p.connected();
            at.push(a);
        }
        // The nodes of the other live links of link `i`'s data center.
        let held = |at: &[SocketAddr], places: &[Placement], i: usize| -> Vec<String> {
            (0..at.len())
                .filter(|&j| j != i && places[j].dc() == places[i].dc())
                .map(|j| plan.data_center(places[j].dc()).node_of(at[j]))
                .collect()
        };
        for restarted in ["n0", "n1", "n2"] {
            for i in 0..4 {
                let dc = plan.data_center(places[i].dc());
                if dc.node_of(at[i]) != restarted {
                    continue;
                }
                let left = places[i].leave(&plan);
                assert_eq!(left, restarted);
                let h = held(&at, &places, i);
                let to = plan.target(&places[i], &h);
                assert_ne!(dc.node_of(to), restarted, "never the node it leaves");
                places[i].trying(to);
                places[i].connected();
                at[i] = to;
            }
            for dc in 0..2 {
                let nodes: std::collections::BTreeSet<String> = (0..4)
                    .filter(|&j| places[j].dc() == dc)
                    .map(|j| plan.data_center(dc).node_of(at[j]))
                    .collect();
                assert_eq!(nodes.len(), 2, "after {restarted}: {at:?}");
            }
        }
    }

    #[test]
    fn a_refreshed_plan_takes_new_servers_and_nodes_by_data_center_name() {
        let plan = LinkPlan::new(vec![dc("dfw", &[1]), dc("mci", &[3])], 2)
            .unwrap_or_else(|e| panic!("{e}"));
        let newer = plan.refreshed(vec![
            dc_on("mci", &[(3, "x"), (7, "y")]),
            dc_on("sea", &[(9, "z")]),
        ]);
        assert_eq!(newer.dc_name(0), "dfw");
        assert_eq!(newer.data_center(0).servers.len(), 1, "left out: kept");
        assert_eq!(newer.data_center(1).servers.len(), 2);
        assert!(newer.knows_nodes() && !plan.knows_nodes());
        assert_eq!(
            newer
                .data_center(1)
                .node_of(SocketAddr::from(([127, 0, 0, 1], 7))),
            "y"
        );
    }

    #[test]
    fn flag_addresses_parse() {
        let dcs = from_flag(&["127.0.0.1:1,127.0.0.1:2".into()]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dcs[0].servers.len(), 2);
        assert!(from_flag(&["nope".into()]).is_err());
    }
}
