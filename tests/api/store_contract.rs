//! The `SessionStore` and `CallLeases` contracts, written once and run against both
//! implementations of each (in memory, and on a private redis-server), as the broker and
//! agent-memory contracts are.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use switchboard::domain::SessionId;
use switchboard::realtime::lease::CallLeases;
use switchboard::store::{SessionState, SessionStore};

fn sid(name: &str) -> SessionId {
    format!("{name}{}", uuid::Uuid::new_v4().simple())
        .parse()
        .unwrap()
}

fn state(id: &SessionId, active: &str) -> SessionState {
    SessionState {
        session_id: id.clone(),
        scenario_id: "simpleHandoff".parse().unwrap(),
        root_agent: "greeter".parse().unwrap(),
        active_agent: active.parse().unwrap(),
        created_at: "2026-12-02T00:00:00.000Z".into(),
        updated_at: "2026-12-02T00:00:00.000Z".into(),
        context: None,
        user_id: Some("u1".into()),
    }
}

/// What a store under test is made of: the store and whatever keeps its backend alive.
pub struct Made<T: ?Sized> {
    pub it: Arc<T>,
    pub _guard: Box<dyn std::any::Any + Send>,
}

pub async fn sessions_round_trip_and_unknown_ones_are_none(store: Made<dyn SessionStore>) {
    let s = store.it;
    let a = sid("a");
    assert_eq!(s.get(&a).await.unwrap(), None);
    s.create(&state(&a, "greeter")).await.unwrap();
    assert_eq!(s.get(&a).await.unwrap(), Some(state(&a, "greeter")));
    s.ping().await.unwrap();
    assert!(s.dataset_since().await.unwrap() <= switchboard::clock::unix_now_ms());
}

pub async fn of_concurrent_switches_from_one_agent_exactly_one_wins(store: Made<dyn SessionStore>) {
    let s = store.it;
    let a = sid("cas");
    s.create(&state(&a, "greeter")).await.unwrap();
    assert!(
        !s.cas_active_agent(&a, "haikuWriter", "greeter")
            .await
            .unwrap(),
        "wrong from"
    );
    let tries = (0..8).map(|i| {
        let (s, a) = (s.clone(), a.clone());
        async move {
            let to = if i % 2 == 0 { "haikuWriter" } else { "other" };
            s.cas_active_agent(&a, "greeter", to).await.unwrap()
        }
    });
    let won = join_all(tries).await.into_iter().filter(|w| *w).count();
    assert_eq!(won, 1);
    assert_ne!(
        s.get(&a).await.unwrap().unwrap().active_agent.as_str(),
        "greeter"
    );
    assert!(
        !s.cas_active_agent(&sid("missing"), "greeter", "x")
            .await
            .unwrap()
    );
}

pub async fn put_once_is_claimed_by_exactly_one_caller(store: Made<dyn SessionStore>) {
    let s = store.it;
    let a = sid("once");
    let ttl = Duration::from_secs(60);
    let tries = (0..8).map(|i| {
        let (s, a) = (s.clone(), a.clone());
        async move { s.put_once(&a, "k", &format!("v{i}"), ttl).await.unwrap() }
    });
    let results = join_all(tries).await;
    assert_eq!(results.iter().filter(|r| r.is_none()).count(), 1);
    let first = s.get_value(&a, "k").await.unwrap().unwrap();
    assert!(
        results.iter().flatten().all(|v| *v == first),
        "later callers see the first value"
    );
    s.put_value(&a, "k", "answer", ttl).await.unwrap();
    assert_eq!(
        s.get_value(&a, "k").await.unwrap().as_deref(),
        Some("answer")
    );
    s.delete_value(&a, "k").await.unwrap();
    assert_eq!(s.get_value(&a, "k").await.unwrap(), None);
    assert_eq!(
        s.put_once(&a, "k", "again", ttl).await.unwrap(),
        None,
        "free after delete"
    );
    // Keys are per session.
    assert_eq!(
        s.put_once(&sid("other"), "k", "x", ttl).await.unwrap(),
        None
    );
}

pub async fn context_is_set_only_on_existing_sessions(store: Made<dyn SessionStore>) {
    let s = store.it;
    let a = sid("ctx");
    assert!(!s.set_context(&a, Some("vip")).await.unwrap());
    s.create(&state(&a, "greeter")).await.unwrap();
    assert!(s.set_context(&a, Some("vip")).await.unwrap());
    assert_eq!(
        s.get(&a).await.unwrap().unwrap().context.as_deref(),
        Some("vip")
    );
}

pub async fn revoked_sessions_are_gone_and_marked(store: Made<dyn SessionStore>) {
    let s = store.it;
    let a = sid("rev");
    s.create(&state(&a, "greeter")).await.unwrap();
    assert!(!s.is_revoked(&a).await.unwrap());
    s.revoke(&a, Duration::from_secs(60)).await.unwrap();
    assert_eq!(s.get(&a).await.unwrap(), None);
    assert!(s.is_revoked(&a).await.unwrap());
}

/// The idle TTL slides with every read: a session read more often than its TTL lives on.
pub async fn sessions_idle_out_and_reads_slide_the_ttl(store: Made<dyn SessionStore>) {
    let s = store.it;
    let (kept, idle) = (sid("kept"), sid("idle"));
    s.create(&state(&kept, "greeter")).await.unwrap();
    s.create(&state(&idle, "greeter")).await.unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(s.get(&kept).await.unwrap().is_some());
    }
    assert_eq!(
        s.get(&idle).await.unwrap(),
        None,
        "idle for 1.2 s with an 0.8 s TTL"
    );
}

pub async fn the_call_index_records_and_forgets_calls(leases: Made<dyn CallLeases>) {
    let l = leases.it;
    let (a, b) = (sid("ca"), sid("cb"));
    assert_eq!(l.call_of(&a).await.unwrap(), None);
    l.register(&a, "rtc_a").await.unwrap();
    l.register(&b, "rtc_b").await.unwrap();
    assert_eq!(l.call_of(&a).await.unwrap().as_deref(), Some("rtc_a"));
    let all = l.calls().await.unwrap();
    assert!(
        all.contains(&(a.clone(), "rtc_a".into())) && all.contains(&(b.clone(), "rtc_b".into()))
    );
    // A call that ends after a newer one started on its session leaves the newer one.
    l.register(&b, "rtc_b2").await.unwrap();
    l.forget_call(&b, "rtc_b").await.unwrap();
    assert_eq!(l.call_of(&b).await.unwrap().as_deref(), Some("rtc_b2"));
    l.forget_call(&b, "rtc_b2").await.unwrap();
    assert_eq!(l.call_of(&b).await.unwrap(), None);
    l.unregister(&a).await.unwrap();
    assert_eq!(l.call_of(&a).await.unwrap(), None);
    assert!(!l.calls().await.unwrap().iter().any(|(s, _)| *s == a));
}

pub async fn one_holder_at_a_time_with_growing_fences(leases: Made<dyn CallLeases>) {
    let l = leases.it;
    let a = sid("lease");
    let ttl = Duration::from_secs(30);
    let tries = (0..6).map(|i| {
        let (l, a) = (l.clone(), a.clone());
        async move { l.acquire(&a, &format!("i{i}"), ttl).await.unwrap() }
    });
    let granted: Vec<_> = join_all(tries).await.into_iter().flatten().collect();
    assert_eq!(granted.len(), 1, "exactly one instance holds the call");
    let first = granted[0].clone();
    assert_eq!(l.holder(&a).await.unwrap(), Some(first.clone()));
    assert!(l.renew(&a, &first, ttl).await.unwrap());
    l.release(&a, &first).await.unwrap();
    assert_eq!(l.holder(&a).await.unwrap(), None);
    let second = l
        .acquire(&a, "next", ttl)
        .await
        .unwrap()
        .expect("free after release");
    assert!(
        second.fence > first.fence,
        "fences grow: {first:?} then {second:?}"
    );
    assert!(
        !l.renew(&a, &first, ttl).await.unwrap(),
        "a stale lease cannot be renewed"
    );
    l.release(&a, &first).await.unwrap();
    assert_eq!(
        l.holder(&a).await.unwrap(),
        Some(second),
        "a stale release changes nothing"
    );
}

pub async fn an_unrenewed_lease_expires_and_its_holder_is_fenced_off(leases: Made<dyn CallLeases>) {
    let l = leases.it;
    let a = sid("expiry");
    let short = Duration::from_millis(300);
    let old = l.acquire(&a, "dead", short).await.unwrap().unwrap();
    assert_eq!(l.acquire(&a, "other", short).await.unwrap(), None, "held");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let new = l
        .acquire(&a, "other", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("expired");
    assert!(new.fence > old.fence);
    assert!(!l.renew(&a, &old, short).await.unwrap());
}

macro_rules! store_contract_tests {
    ($store:expr, $leases:expr) => {
        use $crate::store_contract as c;
        #[tokio::test]
        async fn sessions_round_trip_and_unknown_ones_are_none() {
            c::sessions_round_trip_and_unknown_ones_are_none($store(Duration::from_secs(60)).await)
                .await
        }
        #[tokio::test]
        async fn of_concurrent_switches_from_one_agent_exactly_one_wins() {
            c::of_concurrent_switches_from_one_agent_exactly_one_wins(
                $store(Duration::from_secs(60)).await,
            )
            .await
        }
        #[tokio::test]
        async fn put_once_is_claimed_by_exactly_one_caller() {
            c::put_once_is_claimed_by_exactly_one_caller($store(Duration::from_secs(60)).await)
                .await
        }
        #[tokio::test]
        async fn context_is_set_only_on_existing_sessions() {
            c::context_is_set_only_on_existing_sessions($store(Duration::from_secs(60)).await).await
        }
        #[tokio::test]
        async fn revoked_sessions_are_gone_and_marked() {
            c::revoked_sessions_are_gone_and_marked($store(Duration::from_secs(60)).await).await
        }
        #[tokio::test]
        async fn sessions_idle_out_and_reads_slide_the_ttl() {
            c::sessions_idle_out_and_reads_slide_the_ttl($store(Duration::from_millis(800)).await)
                .await
        }
        #[tokio::test]
        async fn the_call_index_records_and_forgets_calls() {
            c::the_call_index_records_and_forgets_calls($leases().await).await
        }
        #[tokio::test]
        async fn one_holder_at_a_time_with_growing_fences() {
            c::one_holder_at_a_time_with_growing_fences($leases().await).await
        }
        #[tokio::test]
        async fn an_unrenewed_lease_expires_and_its_holder_is_fenced_off() {
            c::an_unrenewed_lease_expires_and_its_holder_is_fenced_off($leases().await).await
        }
    };
}

/// Against `MemoryStore` and `MemoryLeases`.
pub mod memory {
    use super::*;
    use switchboard::realtime::lease::MemoryLeases;
    use switchboard::store::memory::MemoryStore;

    async fn store(ttl: Duration) -> Made<dyn SessionStore> {
        Made {
            it: MemoryStore::new(ttl),
            _guard: Box::new(()),
        }
    }

    async fn leases() -> Made<dyn CallLeases> {
        Made {
            it: Arc::new(MemoryLeases::default()),
            _guard: Box::new(()),
        }
    }

    store_contract_tests!(store, leases);
}

/// Against `RedisStore` and `RedisLeases`, each test on its own private redis-server.
pub mod redis {
    use super::*;
    use crate::support::redis::{RedisServer, unique_prefix};
    use switchboard::broker::redis::RedisClients;
    use switchboard::realtime::lease::RedisLeases;
    use switchboard::store::redis::RedisStore;

    async fn store(ttl: Duration) -> Made<dyn SessionStore> {
        let server = RedisServer::start(false).await;
        let clients = RedisClients::connect(&server.url()).await.unwrap();
        let it = Arc::new(RedisStore::new(
            clients.client.clone(),
            &unique_prefix(),
            ttl,
        ));
        Made {
            it,
            _guard: Box::new(server),
        }
    }

    async fn leases() -> Made<dyn CallLeases> {
        let server = RedisServer::start(false).await;
        let clients = RedisClients::connect(&server.url()).await.unwrap();
        let it = Arc::new(RedisLeases::new(clients.client.clone(), &unique_prefix()));
        Made {
            it,
            _guard: Box::new(server),
        }
    }

    store_contract_tests!(store, leases);
}
