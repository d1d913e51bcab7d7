//! A Redis Cluster's nodes as `CLUSTER NODES` describes them: who is master of which slots, who
//! replicates whom, who is failing. The stores never need it (the cluster client routes by
//! itself); the tools that act on particular nodes do: test cleanup walks every master, the
//! chaos proof kills, pauses and moves the slot of a given sale.

use std::ops::RangeInclusive;

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    pub id: String,
    /// `host:port` for clients (the bus port dropped).
    pub address: String,
    pub is_master: bool,
    /// Flagged `fail` (or `fail?`) by the node asked.
    pub is_failing: bool,
    /// The master it replicates, for a replica.
    pub master_id: Option<String>,
    /// The slots it serves, for a master.
    pub slots: Vec<RangeInclusive<u16>>,
}

impl ClusterNode {
    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|range| range.contains(&slot))
    }
}

/// Every node of a `CLUSTER NODES` reply; lines it cannot read are skipped.
pub fn parse_cluster_nodes(reply: &str) -> Vec<ClusterNode> {
    reply.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<ClusterNode> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (id, address, flags, master) = (
        fields.first()?,
        fields.get(1)?,
        fields.get(2)?,
        fields.get(3)?,
    );
    let flags: Vec<&str> = flags.split(',').collect();
    let slots = fields
        .iter()
        .skip(8)
        // A slot being migrated shows as `[slot->-id]`; it is still served here until moved.
        .filter(|field| !field.starts_with('['))
        .filter_map(|field| {
            let (from, to) = field.split_once('-').unwrap_or((field, field));
            Some(from.parse().ok()?..=to.parse().ok()?)
        })
        .collect();
    Some(ClusterNode {
        id: (*id).to_owned(),
        address: address.split('@').next()?.to_owned(),
        is_master: flags.contains(&"master"),
        is_failing: flags.iter().any(|flag| flag.starts_with("fail")),
        master_id: (*master != "-").then(|| (*master).to_owned()),
        slots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail - 0 1426238318243 3 connected 10923-16383 [10925->-e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca]
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 16000
";

    #[test]
    fn masters_replicas_slots_and_failures_are_read_from_the_reply() {
        let nodes = parse_cluster_nodes(NODES);
        assert_eq!(nodes.len(), 4);
        let replica = &nodes[0];
        assert_eq!(replica.address, "127.0.0.1:30004");
        assert!(!replica.is_master);
        assert_eq!(
            replica.master_id.as_deref(),
            Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        assert!(nodes[1].is_master && nodes[1].serves(5461) && !nodes[1].serves(5460));
        assert!(nodes[2].is_failing && nodes[2].serves(10925));
        assert!(nodes[3].is_master && nodes[3].serves(16000) && !nodes[3].serves(15999));
    }
}
