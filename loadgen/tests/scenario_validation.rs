//! Scenario validation: every impossible scenario is refused before anything starts, with an
//! error naming the file, the field and why. One test per rule, plus every shipped scenario.

use std::path::{Path, PathBuf};

use loadgen::LoadgenError;
use loadgen::scenario::Scenario;

const BASE: &str = r#"
[cluster]
nodes = 3
replication = 3
read_quorum = 2
write_quorum = 2

[workload]
record_count = 100
read = 0.5
update = 0.5

[run]
duration_s = 10
"#;

/// Parses `text` as file `bad.toml` and returns (field, why) of the error.
fn refuse(text: &str) -> (String, String) {
    let path = Path::new("scenarios/bad.toml");
    match Scenario::parse(path, text) {
        Ok(s) => panic!("accepted an invalid scenario: {s:?}"),
        Err(LoadgenError::Scenario { file, field, why }) => {
            assert_eq!(file, path);
            let shown = LoadgenError::Scenario {
                file: file.clone(),
                field: field.clone(),
                why: why.clone(),
            }
            .to_string();
            assert!(shown.starts_with("scenarios/bad.toml: "), "{shown}");
            (field, why)
        }
        Err(other) => panic!("wrong error kind: {other}"),
    }
}

fn with(section: &str, line: &str) -> String {
    BASE.replacen(
        &format!("[{section}]\n"),
        &format!("[{section}]\n{line}\n"),
        1,
    )
}

#[test]
fn base_scenario_is_valid() {
    let s = Scenario::parse(Path::new("x/base.toml"), BASE).expect("valid");
    assert_eq!(s.name, "base");
    assert_eq!(s.workload.zipfian_theta, 0.99);
}

#[test]
fn unknown_field_is_refused() {
    let (field, why) = refuse(&with("workload", "zipfian_thetaa = 0.9"));
    assert_eq!(field, "workload.zipfian_thetaa");
    assert!(why.contains("unknown field"), "{why}");
}

#[test]
fn wrong_type_is_refused() {
    let (field, why) = refuse(&with("run", "clients = \"four\""));
    assert_eq!(field, "run.clients");
    assert!(why.contains("invalid type"), "{why}");
}

#[test]
fn w_greater_than_n_is_refused() {
    let (field, why) = refuse(&BASE.replace("write_quorum = 2", "write_quorum = 4"));
    assert_eq!(field, "cluster.write_quorum");
    assert!(why.contains("1..=N (3)") && why.contains("got 4"), "{why}");
}

#[test]
fn r_greater_than_n_is_refused() {
    let (field, _) = refuse(&BASE.replace("read_quorum = 2", "read_quorum = 5"));
    assert_eq!(field, "cluster.read_quorum");
}

#[test]
fn n_greater_than_nodes_is_refused() {
    let (field, why) = refuse(&BASE.replace("replication = 3", "replication = 4"));
    assert_eq!(field, "cluster.replication");
    assert!(why.contains("node count"), "{why}");
}

#[test]
fn theta_zero_or_negative_is_refused() {
    for theta in ["0.0", "-0.5", "1.0"] {
        let (field, why) = refuse(&with("workload", &format!("zipfian_theta = {theta}")));
        assert_eq!(field, "workload.zipfian_theta");
        assert!(why.contains("(0, 1)"), "{why}");
    }
}

#[test]
fn value_size_zero_is_refused() {
    let (field, why) = refuse(&with("workload", "value_size = 0"));
    assert_eq!(field, "workload.value_size");
    assert!(why.contains("got 0"), "{why}");
}

#[test]
fn value_size_above_the_server_limit_is_refused() {
    let (field, why) = refuse(&with("workload", "value_size = \"9MiB\""));
    assert_eq!(field, "workload.value_size");
    assert!(why.contains("8388608"), "{why}");
}

#[test]
fn malformed_value_size_is_refused() {
    let (field, why) = refuse(&with("workload", "value_size = { min = 10 }"));
    assert_eq!(field, "workload.value_size");
    assert!(why.contains("min = .., max = .."), "{why}");
}

#[test]
fn shares_must_add_up_to_one() {
    let (field, why) = refuse(&BASE.replace("update = 0.5", "update = 0.6"));
    assert_eq!(field, "workload.read");
    assert!(why.contains("must be 1"), "{why}");
}

#[test]
fn duration_and_operations_are_exclusive() {
    let (field, _) = refuse(&with("run", "operations = 1000"));
    assert_eq!(field, "run.operations");
    let (field, _) = refuse(&BASE.replace("duration_s = 10", ""));
    assert_eq!(field, "run.duration_s");
}

#[test]
fn fault_on_a_missing_node_is_refused() {
    let text = format!("{BASE}\n[[fault]]\nat_s = 1\naction = \"kill\"\nnode = 3\n");
    let (field, why) = refuse(&text);
    assert_eq!(field, "fault[0].node");
    assert!(why.contains("does not exist"), "{why}");
}

#[test]
fn restart_of_a_running_node_is_refused() {
    let text = format!("{BASE}\n[[fault]]\nat_s = 1\naction = \"restart\"\nnode = 1\n");
    let (field, why) = refuse(&text);
    assert_eq!(field, "fault[0].node");
    assert!(why.contains("needs node 1 killed"), "{why}");
}

#[test]
fn fault_after_the_run_is_refused() {
    let text = format!("{BASE}\n[[fault]]\nat_s = 10\naction = \"pause\"\nnode = 0\n");
    let (field, _) = refuse(&text);
    assert_eq!(field, "fault[0].at_s");
}

#[test]
fn fault_on_an_existing_cluster_needs_a_command() {
    let text = BASE.replace(
        "nodes = 3\n",
        "endpoints = [\"127.0.0.1:7001\", \"127.0.0.1:7002\", \"127.0.0.1:7003\"]\n",
    ) + "\n[[fault]]\nat_s = 1\naction = \"kill\"\nnode = 0\n";
    let (field, why) = refuse(&text);
    assert_eq!(field, "fault[0].action");
    assert!(why.contains("fault_commands.kill"), "{why}");
}

#[test]
fn quorum_the_server_cannot_express_is_refused() {
    let text = BASE
        .replace("nodes = 3", "nodes = 5")
        .replace("replication = 3", "replication = 5");
    // R = 2 of N = 5 is neither one (1), quorum (3) nor all (5).
    let (field, why) = refuse(&text);
    assert_eq!(field, "cluster.read_quorum");
    assert!(why.contains("3 (quorum)"), "{why}");
}

#[test]
fn random_fault_targets_resolve_deterministically() {
    let text = format!(
        "{BASE}\n[[fault]]\nat_s = 1\naction = \"pause\"\nnode = \"random\"\n\n[[fault]]\nat_s = 2\naction = \"resume\"\nnode = \"random\"\n"
    );
    let p = Path::new("r.toml");
    let a = Scenario::parse(p, &text).unwrap().resolve(7, p).unwrap();
    let b = Scenario::parse(p, &text).unwrap().resolve(7, p).unwrap();
    assert_eq!(a, b);
    let paused = a.faults[0].node_index().expect("resolved");
    assert_eq!(
        a.faults[1].node_index(),
        Some(paused),
        "resume hits the paused node"
    );
    assert_eq!(a.run.seed, Some(7));
    // The resolved scenario parses back to itself.
    let again = Scenario::parse(p, &a.to_toml()).unwrap();
    assert_eq!(again, a);
}

#[test]
fn every_shipped_scenario_is_valid() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("scenarios/") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            if let Some(d) = s.run.duration_s {
                assert!(
                    d + s.run.warmup_s + s.run.echo_s <= 100,
                    "{}: must run within 2 minutes",
                    path.display()
                );
            }
            n += 1;
        }
    }
    assert!(n >= 20, "only {n} scenarios shipped");
}

#[test]
fn peer_stores_refuse_what_they_cannot_do() {
    let etcd_ttl = BASE
        .replace("[cluster]", "[cluster]\nkind = \"etcd\"")
        .replace("update = 0.5", "update = 0.5\nttl_share = 0.1");
    let (field, why) = refuse(&etcd_ttl);
    assert_eq!(field, "workload.ttl_share");
    assert!(why.contains("leases"), "{why}");

    let redis_partial = BASE
        .replace("[cluster]", "[cluster]\nkind = \"redis\"")
        .replace("replication = 3", "replication = 2");
    let (field, why) = refuse(&redis_partial);
    assert_eq!(field, "cluster.replication");
    assert!(why.contains("every key on every node"), "{why}");

    let unknown = BASE.replace("[cluster]", "[cluster]\nkind = \"cassandra\"");
    let (field, _) = refuse(&unknown);
    assert_eq!(field, "cluster.kind");
}

#[test]
fn retargeting_renames_and_revalidates() {
    use loadgen::scenario::StoreKind;
    let path = Path::new("scenarios/x.toml");
    let s = Scenario::parse(path, BASE).unwrap();
    let r = s.clone().retarget(StoreKind::Redis, path).unwrap();
    assert_eq!(r.cluster.kind, StoreKind::Redis);
    assert_eq!(r.name, "x-redis");
    assert_eq!(s.clone().retarget(StoreKind::Kvstore, path).unwrap(), s);

    let ttl = Scenario::parse(
        path,
        &BASE.replace("update = 0.5", "update = 0.5\nttl_share = 0.1"),
    )
    .unwrap();
    match ttl.retarget(StoreKind::Etcd, path) {
        Err(LoadgenError::Scenario { field, why, .. }) => {
            assert_eq!(field, "workload.ttl_share");
            assert!(why.contains("--target etcd"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    let remote = Scenario::parse(
        path,
        &BASE.replace(
            "[cluster]",
            "[cluster]\nendpoints = [\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\"]",
        ),
    )
    .unwrap();
    assert!(matches!(
        remote.retarget(StoreKind::Etcd, path),
        Err(LoadgenError::Scenario { field, .. }) if field == "cluster.endpoints"
    ));
}

#[test]
fn clock_faults_are_checked_field_by_field() {
    let fault = |body: &str| format!("{BASE}\n[[fault]]\nat_s = 1\nnode = 1\n{body}\n");
    let cases = [
        (
            "action = \"bump\"\ndelta_ms = 5",
            "fault[0].kind",
            "kind = \"clock\"",
        ),
        (
            "kind = \"clock\"\naction = \"kill\"",
            "fault[0].action",
            "bump, strobe, drift or reset",
        ),
        (
            "kind = \"clock\"\naction = \"bump\"",
            "fault[0].delta_ms",
            "needs delta_ms",
        ),
        (
            "kind = \"clock\"\naction = \"bump\"\ndelta_ms = 0",
            "fault[0].delta_ms",
            "not be 0",
        ),
        (
            "kind = \"clock\"\naction = \"bump\"\ndelta_ms = 999999999999",
            "fault[0].delta_ms",
            "a week",
        ),
        (
            "kind = \"clock\"\naction = \"strobe\"\ndelta_ms = 900\nperiod_ms = 100",
            "fault[0].until_s",
            "needs until_s",
        ),
        (
            "kind = \"clock\"\naction = \"strobe\"\ndelta_ms = 900\nperiod_ms = 5\nuntil_s = 3",
            "fault[0].period_ms",
            ">= 10",
        ),
        (
            "kind = \"clock\"\naction = \"drift\"\nrate = 1.0",
            "fault[0].rate",
            "not 1",
        ),
        (
            "kind = \"clock\"\naction = \"drift\"\nrate = 1.1\nuntil_s = 0.5",
            "fault[0].until_s",
            "after at_s",
        ),
        (
            "action = \"kill\"\ndelta_ms = 5",
            "fault[0].delta_ms",
            "only clock faults",
        ),
        (
            "kind = \"clock\"\naction = \"reset\"\nrate = 2.0",
            "fault[0].rate",
            "does not take",
        ),
    ];
    for (body, want_field, want_why) in cases {
        let (field, why) = refuse(&fault(body));
        assert_eq!(field, want_field, "{body}: {why}");
        assert!(why.contains(want_why), "{body}: {why}");
    }
    // A clock fault leaves process state alone: a bump of a killed node is fine, and so is a
    // restart after it.
    let ok = format!(
        "{BASE}\n[[fault]]\nat_s = 1\naction = \"kill\"\nnode = 1\n\n[[fault]]\nat_s = 2\n\
         kind = \"clock\"\naction = \"bump\"\ndelta_ms = -60000\nnode = 1\n\n[[fault]]\nat_s = 3\n\
         action = \"restart\"\nnode = 1\n"
    );
    Scenario::parse(Path::new("x/ok.toml"), &ok).expect("valid");
}

#[test]
fn crash_all_takes_every_node_and_needs_them_up() {
    let (field, why) = refuse(&format!(
        "{BASE}\n[[fault]]\nat_s = 1\naction = \"crash_all\"\nnode = 1\n"
    ));
    assert_eq!(field, "fault[0].node", "{why}");
    let (field, why) = refuse(&format!(
        "{BASE}\n[[fault]]\nat_s = 1\naction = \"pause\"\nnode = 2\n\n[[fault]]\nat_s = 2\naction = \"crash_all\"\n"
    ));
    assert_eq!(field, "fault[1].at_s");
    assert!(why.contains("node 2 is paused"), "{why}");
    // Without a node a process fault is refused: only crash_all defaults to every node.
    let (field, why) = refuse(&format!("{BASE}\n[[fault]]\nat_s = 1\naction = \"kill\"\n"));
    assert_eq!(field, "fault[0].node");
    assert!(why.contains("node index"), "{why}");
    Scenario::parse(
        Path::new("x/ok.toml"),
        &format!("{BASE}\n[[fault]]\nat_s = 1\naction = \"crash_all\"\n"),
    )
    .expect("valid");
}

#[test]
fn disk_faults_need_their_kind_and_a_killed_node() {
    let kill = "[[fault]]\nat_s = 1\naction = \"kill\"\nnode = 0\n";
    // A disk action without kind = "disk".
    let (field, why) = refuse(&format!(
        "{BASE}\n{kill}\n[[fault]]\nat_s = 2\naction = \"bitflip\"\nnode = 0\n"
    ));
    assert_eq!(field, "fault[1].kind", "{why}");
    assert!(why.contains("kind = \"disk\""), "{why}");
    // kind = "disk" on an action that is not one.
    let (field, why) = refuse(&format!(
        "{BASE}\n[[fault]]\nat_s = 2\nkind = \"disk\"\naction = \"kill\"\nnode = 0\n"
    ));
    assert_eq!(field, "fault[0].kind", "{why}");
    assert!(why.contains("not kill"), "{why}");
    // On a running node: its files are open; the fault needs it killed first.
    let (field, why) = refuse(&format!(
        "{BASE}\n[[fault]]\nat_s = 2\nkind = \"disk\"\naction = \"truncate\"\nnode = 1\n"
    ));
    assert_eq!(field, "fault[0].node", "{why}");
    assert!(why.contains("needs node 1 killed"), "{why}");
    // The node stays killed after the damage: a restart is what brings it back.
    let ok = format!(
        "{BASE}\n{kill}\n[[fault]]\nat_s = 2\nkind = \"disk\"\naction = \"delete_snapshot\"\nnode = 0\n\n[[fault]]\nat_s = 2.5\nkind = \"disk\"\naction = \"delete_hints\"\nnode = 0\n\n[[fault]]\nat_s = 3\naction = \"restart\"\nnode = 0\n"
    );
    Scenario::parse(Path::new("x/ok.toml"), &ok).expect("valid");
    let (field, why) = refuse(&format!(
        "{BASE}\n{kill}\n[[fault]]\nat_s = 2\nkind = \"disk\"\naction = \"bitflip\"\nnode = 0\n\n[[fault]]\nat_s = 3\naction = \"pause\"\nnode = 0\n"
    ));
    assert_eq!(field, "fault[2].node", "{why}");
    assert!(why.contains("is killed"), "{why}");
}

#[test]
fn disk_full_and_disk_free_pair_up_on_a_node_index() {
    let full = |at: f64, node: &str| {
        format!("[[fault]]\nat_s = {at}\nkind = \"disk\"\naction = \"disk_full\"\nnode = {node}\n")
    };
    let free = |at: f64| {
        format!("[[fault]]\nat_s = {at}\nkind = \"disk\"\naction = \"disk_free\"\nnode = 1\n")
    };
    Scenario::parse(
        Path::new("x/ok.toml"),
        &format!("{BASE}\n{}\n{}", full(1.0, "1"), free(2.0)),
    )
    .expect("valid");
    let (field, why) = refuse(&format!("{BASE}\n{}", free(2.0)));
    assert_eq!(field, "fault[0].node", "{why}");
    assert!(why.contains("a disk_full before it"), "{why}");
    let (field, why) = refuse(&format!("{BASE}\n{}\n{}", full(1.0, "1"), full(2.0, "1")));
    assert_eq!(field, "fault[1].node", "{why}");
    assert!(why.contains("already full"), "{why}");
    let (field, why) = refuse(&format!("{BASE}\n{}", full(1.0, "\"random\"")));
    assert_eq!(field, "fault[0].node", "{why}");
    assert!(why.contains("needs a node index"), "{why}");
}

fn with_faults(faults: &str) -> String {
    format!("{BASE}\n{faults}")
}

#[test]
fn membership_faults_are_checked_against_the_nodes_at_their_time() {
    // The kind is required, and only membership actions take it.
    let (field, why) = refuse(&with_faults("[[fault]]\nat_s = 1\naction = \"join\"\n"));
    assert_eq!(field, "fault[0].kind");
    assert!(why.contains("kind = \"membership\""), "{why}");
    let (field, why) = refuse(&with_faults(
        "[[fault]]\nat_s = 1\naction = \"kill\"\nnode = 0\nkind = \"membership\"\n",
    ));
    assert_eq!(field, "fault[0].action");
    assert!(why.contains("join, leave, wipe or replace"), "{why}");
    // A join takes the next index: naming another is refused.
    let (field, why) = refuse(&with_faults(
        "[[fault]]\nat_s = 1\naction = \"join\"\nkind = \"membership\"\nnode = 1\n",
    ));
    assert_eq!(field, "fault[0].node");
    assert!(why.contains("next index (3)"), "{why}");
    // A leave may not take the ring below N members.
    let (field, why) = refuse(&with_faults(
        "[[fault]]\nat_s = 1\naction = \"leave\"\nkind = \"membership\"\nnode = 1\n",
    ));
    assert_eq!(field, "fault[0].node");
    assert!(why.contains("replication 3"), "{why}");
    // A node that left is gone: a later kill of it is refused; a joined node can be killed.
    let (field, why) = refuse(&with_faults(
        "[[fault]]\nat_s = 1\naction = \"join\"\nkind = \"membership\"\n\
         [[fault]]\nat_s = 2\naction = \"leave\"\nkind = \"membership\"\nnode = 1\n\
         [[fault]]\nat_s = 3\naction = \"kill\"\nnode = 1\n",
    ));
    assert_eq!(field, "fault[2].node");
    assert!(why.contains("it is gone"), "{why}");
    let ok = with_faults(
        "[[fault]]\nat_s = 1\naction = \"join\"\nkind = \"membership\"\n\
         [[fault]]\nat_s = 2\naction = \"kill\"\nnode = 3\n\
         [[fault]]\nat_s = 3\naction = \"restart\"\nnode = 3\n\
         [[fault]]\nat_s = 4\naction = \"replace\"\nkind = \"membership\"\nnode = 0\n\
         [[fault]]\nat_s = 5\naction = \"wipe\"\nkind = \"membership\"\nnode = 4\n",
    );
    let s = Scenario::parse(Path::new("ok.toml"), &ok).unwrap();
    let r = s.resolve(1, Path::new("ok.toml")).unwrap();
    assert_eq!(r.faults[0].node_index(), Some(3), "the join took index 3");
    // Replacing a killed node is refused: replace kills an up one.
    let (field, why) = refuse(&with_faults(
        "[[fault]]\nat_s = 1\naction = \"kill\"\nnode = 0\n\
         [[fault]]\nat_s = 2\naction = \"replace\"\nkind = \"membership\"\nnode = 0\n",
    ));
    assert_eq!(field, "fault[1].node");
    assert!(why.contains("needs node 0 up"), "{why}");
}
