//! The `kv` binary end to end against a real 3-node cluster: every subcommand, values from a
//! file and stdin, `--ttl`, consistency flags, and the documented exit codes.

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{CONVERGE_DEADLINE, start_cluster, wait_members_up};

/// Not a test: the entry point of the server processes this binary starts (see `support`).
#[test]
fn server_process_entry() {
    support::server_entry();
}

/// Runs `kv --seeds SEEDS ARGS...` with optional stdin.
fn kv(seeds: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kv"));
    cmd.arg("--seeds").arg(seeds).args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run kv");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input)
            .expect("write stdin");
    }
    child.wait_with_output().expect("kv output")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn ok(out: Output) -> String {
    assert_eq!(
        code(&out),
        0,
        "stdout: {} stderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn every_subcommand_against_a_real_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = start_cluster(dir.path(), 3, &[]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(wait_members_up(&nodes[0].addr, None, &[1, 2, 3]));
    // One seed is enough; a dead one first must not matter.
    let seeds = format!("{},{}", support::dead_address(), nodes[0].addr);
    let s = seeds.as_str();

    // put / get.
    let out = ok(kv(s, &["put", "greeting", "hello world"], None));
    assert!(
        out.starts_with("OK \"greeting\" (11 bytes) version"),
        "{out}"
    );
    assert_eq!(ok(kv(s, &["get", "greeting"], None)), "hello world");
    assert_eq!(
        ok(kv(s, &["--consistency", "all", "get", "greeting"], None)),
        "hello world"
    );
    let verbose = kv(s, &["-v", "get", "greeting"], None);
    assert!(text(&verbose.stderr).contains("coordinator 127.0.0.1:"));

    // A binary value from a file, byte for byte.
    let value: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let path = dir.path().join("value.bin");
    std::fs::write(&path, &value).expect("write file");
    ok(kv(
        s,
        &[
            "-c",
            "quorum",
            "put",
            "blob",
            "--file",
            path.to_str().expect("utf8"),
        ],
        None,
    ));
    let got = kv(s, &["get", "blob"], None);
    assert_eq!(code(&got), 0);
    assert_eq!(got.stdout, value);

    // From stdin.
    ok(kv(s, &["put", "piped", "-"], Some(b"from stdin\n")));
    assert_eq!(ok(kv(s, &["get", "piped"], None)), "from stdin\n");

    // delete, then get: exit code 1 and a message.
    let out = ok(kv(s, &["delete", "greeting"], None));
    assert!(out.starts_with("OK deleted \"greeting\""), "{out}");
    let gone = kv(s, &["get", "greeting"], None);
    assert_eq!(code(&gone), 1);
    assert!(
        text(&gone.stderr).contains("not found"),
        "{}",
        text(&gone.stderr)
    );
    assert_eq!(code(&kv(s, &["get", "never-written"], None)), 1);

    // --ttl: readable at once, gone after it expires.
    ok(kv(s, &["put", "short", "lived", "--ttl", "1500ms"], None));
    let t0 = Instant::now();
    let first = kv(s, &["get", "short"], None);
    if t0.elapsed() < Duration::from_millis(1000) {
        assert_eq!(code(&first), 0, "{}", text(&first.stderr));
    }
    let until = Instant::now() + CONVERGE_DEADLINE;
    while code(&kv(s, &["get", "short"], None)) != 1 {
        assert!(Instant::now() < until, "ttl never expired");
        std::thread::sleep(Duration::from_millis(200));
    }

    // ring: three members up, primary shares summing to ~100 %, N=3 replicates everything.
    let ring = ok(kv(s, &["ring"], None));
    let rows: Vec<&str> = ring.lines().filter(|l| l.contains("127.0.0.1:")).collect();
    assert_eq!(rows.len(), 3, "{ring}");
    let mut total = 0.0;
    for row in &rows {
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[2], "up", "{row}");
        total += cols[3].parse::<f64>().expect("primary %");
        assert_eq!(cols[4], "100.0", "{row}");
    }
    assert!((total - 100.0).abs() < 0.5, "{ring}");

    // status: every member, or one.
    let all = ok(kv(s, &["status"], None));
    for n in &nodes {
        assert!(
            all.contains(&format!("node {} at {}", n.id, n.addr)),
            "{all}"
        );
    }
    let one = ok(kv(s, &["status", &nodes[1].addr], None));
    assert!(
        one.starts_with(&format!("node 2 at {}", nodes[1].addr)),
        "{one}"
    );
    assert!(one.contains("keys "), "{one}");

    // Usage errors: exit code 2 with a message naming the problem; nothing is sent.
    let bad = kv(s, &["--consistency", "most", "get", "k"], None);
    assert_eq!(code(&bad), 2);
    assert!(
        text(&bad.stderr).contains("unknown consistency level \"most\""),
        "{}",
        text(&bad.stderr)
    );
    let bad_ttl = kv(s, &["put", "k", "v", "--ttl", "10"], None);
    assert_eq!(code(&bad_ttl), 2);
    assert!(text(&bad_ttl.stderr).contains("missing unit"));
    assert_eq!(code(&kv(s, &["put", "k"], None)), 2);
    let empty_key = kv(s, &["put", "", "v"], None);
    assert_eq!(code(&empty_key), 2, "{}", text(&empty_key.stderr));
    assert!(text(&empty_key.stderr).contains("key"));

    // leave: node 3 hands its data over and goes; the others keep every key.
    let out = ok(kv(s, &["leave", "3"], None));
    assert!(out.starts_with("OK node 3 left"), "{out}");
    assert!(
        nodes[2].wait_exit(CONVERGE_DEADLINE).is_some(),
        "node 3 exits after leaving"
    );
    assert_eq!(code(&kv(s, &["get", "blob"], None)), 0);
    let ring = ok(kv(s, &["ring"], None));
    assert!(
        ring.lines()
            .any(|l| l.contains(&nodes[2].addr) && l.contains("left")),
        "{ring}"
    );

    // removenode refuses a live node, naming what to do instead.
    let out = kv(s, &["removenode", "2"], None);
    assert_ne!(code(&out), 0);
    assert!(
        text(&out.stderr).contains("kv leave 2"),
        "{}",
        text(&out.stderr)
    );

    // No server reachable: exit code 3.
    let dead = support::dead_address();
    let out = kv(&dead, &["get", "k"], None);
    assert_eq!(code(&out), 3);
    assert!(text(&out.stderr).contains("no server reachable"));
}

#[test]
fn kv_speaks_tls_with_ca_cert_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    kvstore_server::tls::certs::write_cluster(&certs, 1, &[]).expect("certificates");
    let c = |f: &str| certs.join(f).display().to_string();
    let (node, key, ca, client_ca) = (
        c("node-1.pem"),
        c("node-1.key"),
        c("ca.pem"),
        c("client-ca.pem"),
    );
    let flags = [
        "--replication-factor",
        "1",
        "--cert",
        &node,
        "--key",
        &key,
        "--peer-cert",
        &node,
        "--peer-key",
        &key,
        "--peer-ca",
        &ca,
        "--ca",
        &client_ca,
        "--client-cert-auth",
    ];
    let nodes = start_cluster(dir.path(), 1, &flags);
    let s = nodes[0].addr.as_str();
    let (cert, ckey) = (c("client.pem"), c("client.key"));
    let tls = [
        "--ca",
        ca.as_str(),
        "--cert",
        cert.as_str(),
        "--key",
        ckey.as_str(),
    ];
    let with =
        |rest: &[&str]| -> Vec<String> { tls.iter().chain(rest).map(|s| s.to_string()).collect() };
    let args = with(&["put", "secure", "hello"]);
    ok(kv(
        s,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        None,
    ));
    let args = with(&["get", "secure"]);
    assert_eq!(
        ok(kv(
            s,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            None
        )),
        "hello"
    );
    // Without the client certificate (the node requires one), or without TLS at all, nothing
    // is served; --cert without --ca is a usage error.
    let out = kv(s, &["--ca", &ca, "--timeout", "2s", "get", "secure"], None);
    assert_ne!(code(&out), 0, "{}", text(&out.stdout));
    let out = kv(s, &["--timeout", "2s", "get", "secure"], None);
    assert_ne!(code(&out), 0, "{}", text(&out.stdout));
    let out = kv(s, &["--cert", &cert, "--key", &ckey, "get", "secure"], None);
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("need --ca"),
        "{}",
        text(&out.stderr)
    );
}
