//! The batched replica read stream (`ReadStream`) served by a real node: every batch is
//! answered once, with its id, one result per key in the batch's order, and each result is
//! exactly what `LocalRead` reports for that key (a value, a tombstone, or nothing).

mod cluster_support;

use cluster_support::*;
use kvstore_proto::pb;
use kvstore_proto::pb::Consistency::All;
use tokio_stream::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_answer_in_order_like_local_reads() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), 1, &[]);
    let addr = nodes[0].addr.clone();
    let mut c = kv(&addr).await;
    put(&mut c, "a", "alpha", All).await.unwrap();
    put(&mut c, "b", "beta", All).await.unwrap();
    c.delete(pb::DeleteRequest {
        key: "b".into(),
        consistency: All as i32,
    })
    .await
    .unwrap();

    let batches = vec![
        pb::ReadBatch {
            batch_id: 7,
            keys: vec!["a".into(), "missing".into(), "b".into()],
        },
        pb::ReadBatch {
            batch_id: 8,
            keys: vec!["b".into(), "a".into()],
        },
    ];
    let sent: Vec<pb::ReadBatch> = batches.clone();
    let mut acks = internal(&addr)
        .await
        .read_stream(tokio_stream::iter(sent))
        .await
        .expect("open read stream")
        .into_inner();
    let mut answered = Vec::new();
    for batch in &batches {
        let ack = acks
            .next()
            .await
            .expect("an ack per batch")
            .expect("ack, not an error");
        assert_eq!(ack.batch_id, batch.batch_id, "acks answer batches in order");
        assert_eq!(ack.results.len(), batch.keys.len(), "one result per key");
        for (key, result) in batch.keys.iter().zip(&ack.results) {
            assert!(result.error.is_empty(), "{key}: {}", result.error);
            let want = local(&addr, key).await;
            assert_eq!(result.found, want.is_some(), "{key}");
            assert_eq!(result.entry, want, "{key}");
        }
        answered.push(ack);
    }
    // What the first batch says, in plain terms: a value, nothing, a tombstone.
    let first = &answered[0].results;
    let a = first[0].entry.as_ref().expect("a is stored");
    assert!(!a.tombstone);
    assert_eq!(&a.value[..], b"alpha");
    assert!(!first[1].found && first[1].entry.is_none());
    assert!(first[2].entry.as_ref().expect("b's tombstone").tombstone);
    // The sender closed its side: the node ends the stream.
    assert!(
        acks.next().await.is_none(),
        "stream ends after the last ack"
    );
}
