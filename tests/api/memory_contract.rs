//! The agent-memory contract (Agents SDK `Session` semantics, cap, lock with fencing),
//! written once and run against the in-memory store and the Redis store.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::memory::{AgentMemory, MemoryError};

fn item(role: &str, text: &str) -> Value {
    json!({"role": role, "content": text})
}

pub async fn items_keep_order_and_limit_takes_the_latest(m: &dyn AgentMemory) {
    let s = "order";
    assert!(m.get_items(s, None).await.unwrap().is_empty());
    let items: Vec<Value> = (0..5).map(|i| item("user", &format!("m{i}"))).collect();
    m.add_items(s, &items[..3], None).await.unwrap();
    m.add_items(s, &items[3..], None).await.unwrap();
    assert_eq!(m.get_items(s, None).await.unwrap(), items);
    assert_eq!(m.get_items(s, Some(2)).await.unwrap(), items[3..].to_vec());
    assert!(m.get_items(s, Some(0)).await.unwrap().is_empty());
    assert_eq!(m.get_items(s, Some(99)).await.unwrap(), items);
}

pub async fn pop_and_clear(m: &dyn AgentMemory) {
    let s = "pop";
    assert_eq!(m.pop_item(s).await.unwrap(), None);
    m.add_items(s, &[item("user", "a"), item("assistant", "b")], None)
        .await
        .unwrap();
    assert_eq!(m.pop_item(s).await.unwrap(), Some(item("assistant", "b")));
    assert_eq!(m.get_items(s, None).await.unwrap(), vec![item("user", "a")]);
    m.clear_session(s).await.unwrap();
    assert!(m.get_items(s, None).await.unwrap().is_empty());
}

pub async fn the_cap_trims_the_oldest(m: &dyn AgentMemory) {
    // The stores under test are built with a cap of 10.
    let s = "cap";
    let items: Vec<Value> = (0..14).map(|i| item("user", &format!("m{i}"))).collect();
    m.add_items(s, &items, None).await.unwrap();
    assert_eq!(m.get_items(s, None).await.unwrap(), items[4..].to_vec());
}

pub async fn the_lock_excludes_expires_and_fences(m: &dyn AgentMemory) {
    let s = "lock";
    let t1 = m
        .lock(s, Duration::from_secs(5), Duration::ZERO)
        .await
        .unwrap();
    assert!(matches!(
        m.lock(s, Duration::from_secs(5), Duration::from_millis(100))
            .await,
        Err(MemoryError::Busy)
    ));
    m.add_items(s, &[item("user", "under lock")], Some(&t1))
        .await
        .unwrap();
    m.unlock(s, &t1).await.unwrap();
    // A holder that dies: its lock expires and another takes it.
    let dead = m
        .lock(s, Duration::from_millis(200), Duration::ZERO)
        .await
        .unwrap();
    let t2 = m
        .lock(s, Duration::from_secs(5), Duration::from_secs(2))
        .await
        .unwrap();
    assert_ne!(dead, t2);
    // The old holder can no longer write: nothing is appended.
    assert!(matches!(
        m.add_items(s, &[item("user", "stale")], Some(&dead)).await,
        Err(MemoryError::LockLost)
    ));
    // Unlocking with a stale token does not release the new holder's lock.
    m.unlock(s, &dead).await.unwrap();
    assert!(matches!(
        m.lock(s, Duration::from_secs(5), Duration::ZERO).await,
        Err(MemoryError::Busy)
    ));
    m.unlock(s, &t2).await.unwrap();
    assert_eq!(
        m.get_items(s, None).await.unwrap(),
        vec![item("user", "under lock")]
    );
}

pub async fn a_renewed_lock_outlives_its_ttl_and_a_lost_one_is_not_renewed(m: &dyn AgentMemory) {
    let s = "renew";
    let ttl = Duration::from_millis(300);
    let t = m.lock(s, ttl, Duration::ZERO).await.unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(m.extend_lock(s, &t, ttl).await.unwrap());
    }
    // 600 ms after taking a 300 ms lock, it is still held.
    assert!(matches!(
        m.lock(s, ttl, Duration::ZERO).await,
        Err(MemoryError::Busy)
    ));
    m.add_items(s, &[item("user", "kept")], Some(&t))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let other = m.lock(s, ttl, Duration::ZERO).await.unwrap();
    assert!(
        !m.extend_lock(s, &t, ttl).await.unwrap(),
        "lost locks stay lost"
    );
    m.unlock(s, &other).await.unwrap();
}

pub async fn concurrent_turns_queue_instead_of_interleaving(m: Arc<dyn AgentMemory>) {
    let s = "turns";
    let mut turns = Vec::new();
    for t in 0..4 {
        let m = m.clone();
        turns.push(tokio::spawn(async move {
            let token = m
                .lock(s, Duration::from_secs(5), Duration::from_secs(10))
                .await
                .unwrap();
            m.add_items(s, &[item("user", &format!("q{t}"))], Some(&token))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await; // the model "thinks"
            m.add_items(s, &[item("assistant", &format!("a{t}"))], Some(&token))
                .await
                .unwrap();
            m.unlock(s, &token).await.unwrap();
        }));
    }
    for t in turns {
        t.await.unwrap();
    }
    let items = m.get_items(s, None).await.unwrap();
    assert_eq!(items.len(), 8);
    for pair in items.chunks(2) {
        let q = pair[0]["content"].as_str().unwrap();
        let a = pair[1]["content"].as_str().unwrap();
        assert_eq!(
            &q[1..],
            &a[1..],
            "each question is followed by its own answer: {items:?}"
        );
    }
}

macro_rules! memory_contract {
    ($make:expr) => {
        #[tokio::test]
        async fn items_keep_order_and_limit_takes_the_latest() {
            let (m, _g) = $make.await;
            super::items_keep_order_and_limit_takes_the_latest(m.as_ref()).await
        }
        #[tokio::test]
        async fn a_renewed_lock_outlives_its_ttl_and_a_lost_one_is_not_renewed() {
            let (m, _g) = $make.await;
            super::a_renewed_lock_outlives_its_ttl_and_a_lost_one_is_not_renewed(m.as_ref()).await
        }
        #[tokio::test]
        async fn pop_and_clear() {
            let (m, _g) = $make.await;
            super::pop_and_clear(m.as_ref()).await
        }
        #[tokio::test]
        async fn the_cap_trims_the_oldest() {
            let (m, _g) = $make.await;
            super::the_cap_trims_the_oldest(m.as_ref()).await
        }
        #[tokio::test]
        async fn the_lock_excludes_expires_and_fences() {
            let (m, _g) = $make.await;
            super::the_lock_excludes_expires_and_fences(m.as_ref()).await
        }
        #[tokio::test]
        async fn concurrent_turns_queue_instead_of_interleaving() {
            let (m, _g) = $make.await;
            super::concurrent_turns_queue_instead_of_interleaving(m).await
        }
    };
}

mod in_memory {
    use super::*;

    async fn make() -> (Arc<dyn AgentMemory>, ()) {
        (Arc::new(switchboard::memory::local::InMemory::new(10)), ())
    }

    memory_contract!(make());
}

mod redis {
    use super::*;
    use crate::support::redis::{RedisServer, unique_prefix};
    use switchboard::broker::redis::RedisClients;
    use switchboard::memory::redis::RedisMemory;

    async fn make() -> (Arc<dyn AgentMemory>, RedisServer) {
        let server = RedisServer::start(false).await;
        let clients = RedisClients::connect(&server.url()).await.unwrap();
        let m = RedisMemory::new(
            clients.client.clone(),
            &format!("{}:agents:session", unique_prefix()),
            10,
            None,
        );
        (Arc::new(m), server)
    }

    memory_contract!(make());

    /// The keys and encoding are exactly what the Agents SDK's `RedisSession` reads.
    #[tokio::test]
    async fn the_layout_is_the_agents_sdk_redis_session_layout() {
        let server = RedisServer::start(false).await;
        let clients = RedisClients::connect(&server.url()).await.unwrap();
        let m = RedisMemory::new(
            clients.client.clone(),
            "agents:session",
            100,
            Some(Duration::from_secs(600)),
        );
        let items = [
            item("user", "héllo"),
            json!({"type": "function_call_output", "call_id": "c1", "output": "{\"ok\":true}"}),
        ];
        m.add_items("conv-1", &items, None).await.unwrap();
        use fred::prelude::{HashesInterface, KeysInterface, ListInterface};
        let meta: std::collections::HashMap<String, String> = clients
            .client
            .hgetall("agents:session:conv-1")
            .await
            .unwrap();
        assert_eq!(meta["session_id"], "conv-1");
        assert!(meta["created_at"].parse::<u64>().unwrap() > 1_700_000_000);
        assert!(
            meta["updated_at"].parse::<u64>().unwrap()
                >= meta["created_at"].parse::<u64>().unwrap()
        );
        let raw: Vec<String> = clients
            .client
            .lrange("agents:session:conv-1:messages", 0, -1)
            .await
            .unwrap();
        assert_eq!(raw.len(), 2);
        for (r, want) in raw.iter().zip(&items) {
            assert!(!r.contains(": ") && !r.contains(", "), "compact JSON: {r}");
            assert_eq!(&serde_json::from_str::<Value>(r).unwrap(), want);
        }
        let ttl: i64 = clients
            .client
            .ttl("agents:session:conv-1:messages")
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 600);
        m.clear_session("conv-1").await.unwrap();
        let exists: i64 = clients
            .client
            .exists(vec![
                "agents:session:conv-1",
                "agents:session:conv-1:messages",
            ])
            .await
            .unwrap();
        assert_eq!(exists, 0);
    }
}
