//! What the planner must know about this machine, gathered under the global lock.

use crate::plan::{Facts, ID_LEN};
use crate::state::all_states;
use crate::topology::Name;
use crate::Error;
use lab_net::Netlink;

/// Subnets in use (host routes, other labs) and lab ids taken (by other labs' state or by
/// leftover interfaces whose lab is unknown).
pub async fn gather(host: &Netlink, lab: &Name) -> Result<Facts, Error> {
    let mut facts = Facts::default();
    // Other labs first: a conflict then names the lab rather than its bridge's route.
    for (name, state) in all_states() {
        let Some(state) = state else { continue };
        if &name == lab {
            continue;
        }
        facts.taken_ids.insert(state.plan.id.clone());
        facts.taken_groups.insert(state.plan.group);
        facts.taken_userns.extend(state.plan.nodes.iter().filter_map(|n| n.userns.map(|m| m.host)));
        for n in &state.plan.networks {
            for subnet in [Some(n.subnet), n.subnet6].into_iter().flatten() {
                facts.used_subnets.push((subnet, format!("lab {name}'s network {}", n.name)));
            }
        }
        for p in &state.plan.ports {
            facts.used_ports.push(((p.host_port, p.protocol), format!("lab {name} (node {})", p.node)));
        }
    }
    for r in host.host_routes().await? {
        let dev = r.dev.map(|d| format!(" dev {d}")).unwrap_or_default();
        facts.used_subnets.push((r.destination, format!("host route {}{dev}", r.destination)));
    }
    let own = format!("lab/{lab}/");
    for link in host.links().await? {
        if link.alias.as_deref().is_some_and(|a| a.starts_with(&own)) {
            continue;
        }
        if let Some(id) = host_name_id(&link.name) {
            facts.taken_ids.insert(id);
        }
        if link.group != 0 {
            facts.taken_groups.insert(link.group);
        }
    }
    Ok(facts)
}

/// The lab id in a host interface name made by lab (`lb-<id>-N` bridges, `lv-<id>-N` and
/// `lw-<id>-N` veth ends, `li-<id>-N` IFB devices).
pub fn host_name_id(name: &str) -> Option<String> {
    let rest = ["lb-", "lv-", "lw-", "li-"].iter().find_map(|p| name.strip_prefix(p))?;
    let (id, n) = rest.split_once('-')?;
    (id.len() == ID_LEN && n.chars().all(|c| c.is_ascii_digit())).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_in_host_names() {
        assert_eq!(super::host_name_id("lb-abc12-0").as_deref(), Some("abc12"));
        assert_eq!(super::host_name_id("lv-abc12-123").as_deref(), Some("abc12"));
        assert_eq!(super::host_name_id("lw-abc12-7").as_deref(), Some("abc12"));
        assert_eq!(super::host_name_id("li-abc12-7").as_deref(), Some("abc12"));
        assert_eq!(super::host_name_id("lv-abc1-1"), None);
        assert_eq!(super::host_name_id("eth0"), None);
    }
}
