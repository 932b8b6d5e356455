//! One contract for the record store, run against SQLite (the embedded default) and a
//! private Postgres: ordering, cursors and kinds, idempotent writes, amendments, the session
//! list, erasure and retention.

use serde_json::json;
use switchboard::config::RecordDatabase;
use switchboard::record::sql::SqlRecord;
use switchboard::record::{Entry, RecordStore, SessionQuery, SessionSort};

use crate::support::postgres::PostgresServer;

fn entry(sid: &str, seq: u64, at_ms: i64, kind: &str) -> Entry {
    Entry {
        seq,
        session_id: sid.to_owned(),
        at_ms,
        scenario: "customerServiceRetail".into(),
        user_id: Some("alice".into()),
        call_id: Some("rtc_1".into()),
        agent: Some("salesAgent".into()),
        kind: kind.to_owned(),
        key: None,
        cost_nanousd: 0,
        data: json!({"n": seq}),
    }
}

async fn contract(store: &dyn RecordStore) {
    let now = 1_796_169_600_000;
    let a = "11111111-1111-4111-8111-111111111111";
    let b = "22222222-2222-4222-8222-222222222222";
    let mut said = entry(a, 3, now + 30, "turn.assistant");
    said.key = Some("item_a".into());
    said.data = json!({"text": "one two three four", "generated_text": "one two three four", "audio_ms": 4000});
    let mut usage = entry(a, 4, now + 40, "usage");
    usage.cost_nanousd = 49_240_000;
    let batch = vec![
        entry(a, 1, now, "call.started"),
        entry(a, 2, now + 20, "turn.user"),
        said,
        usage,
        entry(a, 5, now + 50, "tool.call"),
    ];
    store.write(&batch).await.unwrap();
    // A repeated write (a flusher that died before dropping its batch) changes nothing.
    store.write(&batch).await.unwrap();
    let mut other = entry(b, 1, now - 86_400_000, "turn.user");
    other.scenario = "chatSupervisor".into();
    other.user_id = Some("bob".into());
    store.write(&[other]).await.unwrap();

    let items = store.items(a, 0, None, 100).await.unwrap();
    let seqs: Vec<u64> = items.iter().map(|i| i.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5], "in order, once each");
    assert_eq!(items[3].cost_usd.as_deref(), Some("0.04924"));
    assert_eq!(items[0].cost_usd, None);
    assert_eq!(items[1].data, json!({"n": 2}));
    let page = store.items(a, 2, None, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|i| i.seq).collect::<Vec<_>>(),
        [3, 4],
        "after a cursor, a limit"
    );
    let only = store
        .items(a, 0, Some(&["usage".into(), "tool.call".into()]), 100)
        .await
        .unwrap();
    assert_eq!(
        only.iter().map(|i| i.kind.as_str()).collect::<Vec<_>>(),
        ["usage", "tool.call"]
    );

    // An interruption that arrives after the turn was written amends it.
    let mut amend = entry(a, 6, now + 60, "amend");
    amend.key = Some("item_a".into());
    amend.data = json!({"interrupted": true, "audio_end_ms": 2000});
    store.write(&[amend]).await.unwrap();
    let items = store.items(a, 0, None, 100).await.unwrap();
    assert_eq!(items.len(), 5, "an amendment is not an item");
    assert_eq!(items[2].data["text"], "one two");
    assert_eq!(items[2].data["interrupted"], true);

    let row = store.session(a).await.unwrap().unwrap();
    assert_eq!(
        (row.turns, row.tool_calls, row.calls),
        (2, 1, 1),
        "totals are not doubled by a rewrite"
    );
    assert_eq!(row.cost_usd, "0.04924");
    assert_eq!(row.user_id.as_deref(), Some("alice"));
    assert_eq!(row.ended_at, None);
    store
        .write(&[entry(a, 7, now + 70, "call.ended")])
        .await
        .unwrap();
    assert!(store.session(a).await.unwrap().unwrap().ended_at.is_some());

    let q = |f: &dyn Fn(&mut SessionQuery)| {
        let mut q = SessionQuery {
            limit: 10,
            ..SessionQuery::default()
        };
        f(&mut q);
        q
    };
    let (rows, total) = store.sessions(&q(&|_| {})).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(rows[0].session_id, a, "newest first");
    let (rows, _) = store
        .sessions(&q(&|q| q.sort = SessionSort::StartedAsc))
        .await
        .unwrap();
    assert_eq!(rows[0].session_id, b);
    let (rows, total) = store
        .sessions(&q(&|q| q.user_id = Some("bob".into())))
        .await
        .unwrap();
    assert_eq!(
        (rows.len(), total, rows[0].scenario.as_str()),
        (1, 1, "chatSupervisor")
    );
    let (_, total) = store
        .sessions(&q(&|q| q.scenario = Some("customerServiceRetail".into())))
        .await
        .unwrap();
    assert_eq!(total, 1);
    let (_, total) = store
        .sessions(&q(&|q| q.from_ms = Some(now - 1000)))
        .await
        .unwrap();
    assert_eq!(total, 1);
    let (rows, total) = store
        .sessions(&q(&|q| {
            q.limit = 1;
            q.offset = 1;
        }))
        .await
        .unwrap();
    assert_eq!((rows.len(), total, rows[0].session_id.as_str()), (1, 2, b));

    // Erasure: gone, remembered, and later (or late) writes are dropped.
    assert!(store.erase(a).await.unwrap());
    assert!(store.erased(a).await.unwrap());
    assert!(store.items(a, 0, None, 100).await.unwrap().is_empty());
    store.write(&batch).await.unwrap();
    assert!(store.items(a, 0, None, 100).await.unwrap().is_empty());
    assert!(store.session(a).await.unwrap().is_none());
    assert!(!store.erased(b).await.unwrap());

    // Retention: sessions idle since before the cut-off go.
    assert_eq!(store.expire(now - 1000).await.unwrap(), 1);
    assert!(store.items(b, 0, None, 100).await.unwrap().is_empty());
    store.ping().await.unwrap();
}

#[tokio::test]
async fn sqlite_keeps_the_record_contract_and_its_file_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("record.db").to_str().unwrap().to_owned();
    let db = RecordDatabase::Sqlite(path);
    contract(&SqlRecord::connect(&db).await.unwrap()).await;
    let s = "33333333-3333-4333-8333-333333333333";
    {
        let store = SqlRecord::connect(&db).await.unwrap();
        store.write(&[entry(s, 1, 1, "turn.user")]).await.unwrap();
    }
    let reopened = SqlRecord::connect(&db).await.unwrap();
    assert_eq!(
        reopened.items(s, 0, None, 10).await.unwrap().len(),
        1,
        "the file keeps it"
    );
}

#[tokio::test]
async fn postgres_keeps_the_record_contract() {
    let pg = PostgresServer::start().await;
    let db = RecordDatabase::Postgres(pg.url());
    contract(&SqlRecord::connect(&db).await.unwrap()).await;
    // Migrations are applied once: a second instance connecting finds them done.
    SqlRecord::connect(&db).await.unwrap().ping().await.unwrap();
}

/// Two instances started together in one working directory share the embedded file: both
/// come up (the second does not trip over the schema the first is creating).
#[tokio::test]
async fn instances_that_start_together_share_one_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = RecordDatabase::Sqlite(dir.path().join("switchboard.db").display().to_string());
    let opened = futures_util::future::join_all((0..8).map(|_| SqlRecord::connect(&db))).await;
    for (i, store) in opened.into_iter().enumerate() {
        let store = store.unwrap_or_else(|e| panic!("instance {i} did not start: {e}"));
        store.ping().await.unwrap();
    }
}
