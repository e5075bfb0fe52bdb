//! Validation of partition faults (`kind = "partition"`): each shape's nodes, `until_s`, the
//! one-partition-at-a-time timeline, and where partitions cannot go (existing clusters, peer
//! stores), `clients` ("all" or "follow", on a cut only), each refused with the field and why;
//! and the shipped partition scenarios parse.

use std::path::Path;

use loadgen::LoadgenError;
use loadgen::scenario::{FaultAction, PartitionClients, Scenario};

const BASE: &str = r#"
[cluster]
nodes = 5
replication = 3
read_quorum = 2
write_quorum = 2

[workload]
record_count = 100
read = 0.5
update = 0.5

[run]
duration_s = 30
"#;

fn parse(faults: &str) -> Result<Scenario, (String, String)> {
    match Scenario::parse(Path::new("scenarios/p.toml"), &format!("{BASE}\n{faults}")) {
        Ok(s) => Ok(s),
        Err(LoadgenError::Scenario { field, why, .. }) => Err((field, why)),
        Err(other) => panic!("wrong error kind: {other}"),
    }
}

fn refuse(faults: &str) -> (String, String) {
    match parse(faults) {
        Ok(s) => panic!("accepted an invalid scenario: {:?}", s.faults),
        Err(e) => e,
    }
}

fn fault(body: &str) -> String {
    format!("[[fault]]\nkind = \"partition\"\n{body}\n")
}

#[test]
fn every_shape_is_accepted_with_the_nodes_it_needs() {
    for body in [
        "at_s = 1.0\naction = \"isolate\"\nnode = 4\nuntil_s = 5.0",
        "at_s = 1.0\naction = \"halves\"\nuntil_s = 5.0",
        "at_s = 1.0\naction = \"bridge\"\nnode = 2\nuntil_s = 5.0",
        "at_s = 1.0\naction = \"one_way\"\nnode = 0\nto = 1\nuntil_s = 5.0",
        "at_s = 1.0\naction = \"ring\"\nuntil_s = 5.0",
    ] {
        let s = parse(&fault(body)).unwrap_or_else(|e| panic!("{body}: {e:?}"));
        assert!(s.faults[0].action.is_partition());
    }
    // A cut and its explicit heal.
    let s = parse(&format!(
        "{}{}",
        fault("at_s = 1.0\naction = \"halves\""),
        fault("at_s = 4.0\naction = \"heal\"")
    ))
    .expect("valid");
    assert_eq!(s.faults[1].action, FaultAction::Heal);
}

#[test]
fn the_kind_is_required_and_matches_the_action() {
    let (field, why) = refuse("[[fault]]\nat_s = 1.0\naction = \"halves\"\n");
    assert_eq!(field, "fault[0].kind");
    assert!(why.contains("kind = \"partition\""), "{why}");
    let (field, why) = refuse(&fault("at_s = 1.0\naction = \"kill\"\nnode = 1"));
    assert_eq!(field, "fault[0].action");
    assert!(
        why.contains("isolate, halves, bridge, one_way, ring or heal"),
        "{why}"
    );
    let (field, why) = refuse(&fault("at_s = 1.0\naction = \"sever\""));
    assert_eq!(field, "fault.action");
    assert!(why.contains("unknown variant `sever`"), "{why}");
}

#[test]
fn clients_is_all_or_follow_on_a_cut_only() {
    let s = parse(&fault("at_s = 1.0\naction = \"isolate\"\nnode = 2")).expect("valid");
    assert_eq!(s.faults[0].clients, None, "all is the default");
    assert!(!s.partitions_clients());
    for (value, want) in [
        ("all", PartitionClients::All),
        ("follow", PartitionClients::Follow),
    ] {
        for body in [
            "action = \"isolate\"\nnode = 2",
            "action = \"halves\"",
            "action = \"bridge\"\nnode = 2",
            "action = \"one_way\"\nnode = 0\nto = 1",
            "action = \"ring\"",
        ] {
            let s = parse(&fault(&format!(
                "at_s = 1.0\n{body}\nclients = \"{value}\"\nuntil_s = 5.0"
            )))
            .unwrap_or_else(|e| panic!("{body} clients = {value}: {e:?}"));
            assert_eq!(s.faults[0].clients, Some(want));
            assert_eq!(s.partitions_clients(), want == PartitionClients::Follow);
            // The resolved scenario (scenario.toml of a run) keeps the field.
            assert!(s.to_toml().contains(&format!("clients = \"{value}\"")));
        }
    }
    let (field, why) = refuse(&fault(
        "at_s = 1.0\naction = \"isolate\"\nnode = 2\nclients = \"majority\"",
    ));
    assert_eq!(field, "fault.clients");
    assert!(
        why.contains("unknown variant `majority`") && why.contains("`follow`"),
        "{why}"
    );
    let (field, why) = refuse(&fault(
        "at_s = 1.0\naction = \"isolate\"\nnode = 2\nclients = true",
    ));
    assert_eq!(field, "fault.clients", "{why}");
    let (field, why) = refuse(&format!(
        "{}{}",
        fault("at_s = 1.0\naction = \"halves\"\nclients = \"follow\""),
        fault("at_s = 4.0\naction = \"heal\"\nclients = \"follow\"")
    ));
    assert_eq!(field, "fault[1].clients");
    assert!(why.contains("not heal"), "{why}");
    let (field, why) =
        refuse("[[fault]]\nat_s = 1.0\naction = \"kill\"\nnode = 1\nclients = \"follow\"\n");
    assert_eq!(field, "fault[0].clients");
    assert!(why.contains("only a partition that cuts"), "{why}");
    let (field, _) = refuse(&link(
        "at_s = 1.0\naction = \"loss\"\nnode = 0\nto = 1\nprobability = 0.5\nclients = \"follow\"",
    ));
    assert_eq!(field, "fault[0].clients");
}

#[test]
fn nodes_must_exist_and_be_named() {
    let (field, why) = refuse(&fault("at_s = 1.0\naction = \"isolate\"\nnode = 5"));
    assert_eq!(field, "fault[0].node");
    assert!(why.contains("node 5 does not exist (5 nodes)"), "{why}");
    let (field, why) = refuse(&fault(
        "at_s = 1.0\naction = \"isolate\"\nnode = \"random\"",
    ));
    assert_eq!(field, "fault[0].node");
    assert!(why.contains("needs a node index"), "{why}");
    let (field, why) = refuse(&fault("at_s = 1.0\naction = \"one_way\"\nnode = 1"));
    assert_eq!(field, "fault[0].to");
    assert!(why.contains("needs a node index"), "{why}");
    let (field, why) = refuse(&fault("at_s = 1.0\naction = \"one_way\"\nnode = 1\nto = 1"));
    assert_eq!(field, "fault[0].to");
    assert!(why.contains("to = node = 1"), "{why}");
    let (field, _) = refuse(&fault("at_s = 1.0\naction = \"halves\"\nnode = 1"));
    assert_eq!(field, "fault[0].node");
    let (field, why) = refuse(&fault("at_s = 1.0\naction = \"isolate\"\nnode = 1\nto = 2"));
    assert_eq!(field, "fault[0].to");
    assert!(why.contains("only one_way"), "{why}");
    let (field, _) = refuse("[[fault]]\nat_s = 1.0\naction = \"kill\"\nnode = 1\nto = 2\n");
    assert_eq!(field, "fault[0].to");
}

#[test]
fn a_ring_of_three_cuts_nothing_and_is_refused() {
    let text = BASE.replace("nodes = 5", "nodes = 3");
    let err = Scenario::parse(
        Path::new("p.toml"),
        &format!("{text}\n{}", fault("at_s = 1.0\naction = \"ring\"")),
    )
    .expect_err("refused");
    assert!(
        err.to_string().contains("ring cuts nothing below 4 nodes"),
        "{err}"
    );
}

#[test]
fn until_s_is_after_at_s_and_before_the_end() {
    let (field, why) = refuse(&fault("at_s = 5.0\naction = \"halves\"\nuntil_s = 5.0"));
    assert_eq!(field, "fault[0].until_s");
    assert!(why.contains("must be after at_s"), "{why}");
    let (field, why) = refuse(&fault("at_s = 5.0\naction = \"halves\"\nuntil_s = 30.0"));
    assert_eq!(field, "fault[0].until_s");
    assert!(why.contains("not before the end of the run"), "{why}");
    let (field, _) = refuse(&format!(
        "{}{}",
        fault("at_s = 1.0\naction = \"halves\""),
        fault("at_s = 4.0\naction = \"heal\"\nuntil_s = 6.0")
    ));
    assert_eq!(field, "fault[1].until_s");
}

#[test]
fn one_partition_at_a_time_and_every_heal_heals_something() {
    let (field, why) = refuse(&format!(
        "{}{}",
        fault("at_s = 1.0\naction = \"halves\"\nuntil_s = 8.0"),
        fault("at_s = 4.0\naction = \"isolate\"\nnode = 0")
    ));
    assert_eq!(field, "fault[1].at_s");
    assert!(
        why.contains("while fault[0] (halves) is still in force"),
        "{why}"
    );
    let (field, why) = refuse(&fault("at_s = 1.0\naction = \"heal\""));
    assert_eq!(field, "fault[0].action");
    assert!(why.contains("no partition is in force"), "{why}");
    // Back to back: the next cut at the previous one's until_s.
    parse(&format!(
        "{}{}",
        fault("at_s = 1.0\naction = \"halves\"\nuntil_s = 8.0"),
        fault("at_s = 8.0\naction = \"isolate\"\nnode = 0\nuntil_s = 12.0")
    ))
    .expect("valid");
}

#[test]
fn partitions_need_loadgen_s_own_kvstore_nodes() {
    let existing = BASE.replace(
        "[cluster]\n",
        "[cluster]\nendpoints = [\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\", \"127.0.0.1:4\", \"127.0.0.1:5\"]\n",
    );
    let err = Scenario::parse(
        Path::new("p.toml"),
        &format!("{existing}\n{}", fault("at_s = 1.0\naction = \"halves\"")),
    )
    .expect_err("refused");
    assert!(
        err.to_string().contains("need loadgen's own nodes"),
        "{err}"
    );
    let redis = BASE
        .replace("[cluster]\n", "[cluster]\nkind = \"redis\"\n")
        .replace("replication = 3", "replication = 5");
    let err = Scenario::parse(
        Path::new("p.toml"),
        &format!("{redis}\n{}", fault("at_s = 1.0\naction = \"halves\"")),
    )
    .expect_err("refused");
    assert!(
        err.to_string()
            .contains("halves is a fault of kvstore nodes"),
        "{err}"
    );
}

#[test]
fn shipped_partition_scenarios_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).expect("scenarios dir") {
        let p = e.expect("entry").path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        if name.starts_with("partition_") {
            let s = Scenario::load(&p).unwrap_or_else(|e| panic!("{e}"));
            assert!(loadgen::netns::needs_namespace(&s), "{name}");
            seen += 1;
        }
    }
    assert_eq!(
        seen, 6,
        "partition_isolate, _halves, _bridge, _one_way, _ring, _follow"
    );
}

fn link(body: &str) -> String {
    format!("[[fault]]\nkind = \"link\"\n{body}\n")
}

#[test]
fn link_loss_names_a_directed_link_and_a_probability() {
    let s = parse(&link(
        "at_s = 1.0\naction = \"loss\"\nnode = 0\nto = 1\nprobability = 0.2\nuntil_s = 9.0",
    ))
    .expect("valid");
    assert!(loadgen::netns::needs_namespace(&s));
    parse(&format!(
        "{}{}",
        link("at_s = 1.0\naction = \"loss\"\nnode = 0\nto = 1\nprobability = 1.0"),
        link("at_s = 4.0\naction = \"restore\"")
    ))
    .expect("a loss and its restore");
    let (field, why) = refuse(&link("at_s = 1.0\naction = \"loss\"\nnode = 0\nto = 1"));
    assert_eq!(field, "fault[0].probability");
    assert!(why.contains("needs the share"), "{why}");
    let (field, why) = refuse(&link(
        "at_s = 1.0\naction = \"loss\"\nnode = 0\nto = 1\nprobability = 1.5",
    ));
    assert_eq!(field, "fault[0].probability");
    assert!(why.contains("in (0, 1], got 1.5"), "{why}");
    let (field, _) = refuse(&link(
        "at_s = 1.0\naction = \"loss\"\nnode = 0\nto = 7\nprobability = 0.5",
    ));
    assert_eq!(field, "fault[0].to");
    let (field, why) = refuse("[[fault]]\nat_s = 1.0\naction = \"loss\"\nnode = 0\nto = 1\n");
    assert_eq!(field, "fault[0].kind");
    assert!(why.contains("kind = \"link\""), "{why}");
    let (field, _) =
        refuse("[[fault]]\nat_s = 1.0\naction = \"kill\"\nnode = 0\nprobability = 0.5\n");
    assert_eq!(field, "fault[0].probability");
    let (field, why) = refuse(&link("at_s = 1.0\naction = \"restore\""));
    assert_eq!(field, "fault[0].action");
    assert!(why.contains("no link fault is in force"), "{why}");
    let (field, _) = refuse(&format!(
        "{}{}",
        link("at_s = 1.0\naction = \"loss\"\nnode = 0\nto = 1\nprobability = 0.5"),
        link("at_s = 2.0\naction = \"loss\"\nnode = 1\nto = 0\nprobability = 0.5")
    ));
    assert_eq!(field, "fault[1].at_s");
    // A loss and a partition at once: separate chains, both allowed.
    parse(&format!(
        "{}{}",
        link("at_s = 1.0\naction = \"loss\"\nnode = 0\nto = 1\nprobability = 0.5\nuntil_s = 9.0"),
        fault("at_s = 2.0\naction = \"isolate\"\nnode = 4\nuntil_s = 8.0")
    ))
    .expect("valid");
}

#[test]
fn a_slow_link_names_a_directed_link_a_delay_or_a_bandwidth_and_runs_alone() {
    let s = parse(&link(
        "at_s = 1.0\naction = \"slow\"\nnode = 0\nto = 1\ndelay_ms = 200\njitter_ms = 50\nbytes_per_sec = 65536\nuntil_s = 9.0",
    ))
    .expect("valid");
    assert!(s.shapes_links() && loadgen::netns::needs_namespace(&s));
    assert!(
        !parse(&link(
            "at_s = 1.0\naction = \"loss\"\nnode = 0\nto = 1\nprobability = 0.5"
        ))
        .unwrap()
        .shapes_links()
    );
    parse(&format!(
        "{}{}",
        link("at_s = 1.0\naction = \"slow\"\nnode = 0\nto = 1\nbytes_per_sec = 4096"),
        link("at_s = 4.0\naction = \"restore\"")
    ))
    .expect("a bandwidth alone, and its restore");
    let (field, why) = refuse(&link("at_s = 1.0\naction = \"slow\"\nnode = 0\nto = 1"));
    assert_eq!(field, "fault[0].delay_ms");
    assert!(why.contains("a delay (delay_ms) or a bandwidth"), "{why}");
    let (field, why) = refuse(&link(
        "at_s = 1.0\naction = \"slow\"\nnode = 0\nto = 1\ndelay_ms = 20000",
    ));
    assert_eq!(field, "fault[0].delay_ms");
    assert!(why.contains("at most 10000 ms, got 20000"), "{why}");
    let (field, why) = refuse(&link(
        "at_s = 1.0\naction = \"slow\"\nnode = 0\nto = 1\nbytes_per_sec = 10",
    ));
    assert_eq!(field, "fault[0].bytes_per_sec");
    assert!(why.contains("at least 1024, got 10"), "{why}");
    let (field, _) = refuse(&link(
        "at_s = 1.0\naction = \"slow\"\nnode = 0\nto = 1\nbytes_per_sec = 4096\njitter_ms = 5",
    ));
    assert_eq!(field, "fault[0].jitter_ms");
    let (field, _) = refuse(&link(
        "at_s = 1.0\naction = \"slow\"\nnode = 0\nto = 1\ndelay_ms = 5\nprobability = 0.5",
    ));
    assert_eq!(field, "fault[0].probability");
    let (field, _) = refuse(&link(
        "at_s = 1.0\naction = \"loss\"\nnode = 0\nto = 1\nprobability = 0.5\ndelay_ms = 5",
    ));
    assert_eq!(field, "fault[0].delay_ms");
    let (field, _) = refuse("[[fault]]\nat_s = 1.0\naction = \"kill\"\nnode = 0\ndelay_ms = 5\n");
    assert_eq!(field, "fault[0].delay_ms");
    let (field, _) = refuse(&link(
        "at_s = 1.0\naction = \"slow\"\nnode = 2\nto = 2\ndelay_ms = 5",
    ));
    assert_eq!(field, "fault[0].to");
    // Beside a partition the slow link's proxy would hide the cut: refused.
    let (field, why) = refuse(&format!(
        "{}{}",
        link("at_s = 1.0\naction = \"slow\"\nnode = 0\nto = 1\ndelay_ms = 50\nuntil_s = 3.0"),
        fault("at_s = 5.0\naction = \"isolate\"\nnode = 4\nuntil_s = 8.0")
    ));
    assert_eq!(field, "fault[1].action");
    assert!(why.contains("cannot run beside a slow link"), "{why}");
}
