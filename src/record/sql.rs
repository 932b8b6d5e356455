//! [`RecordStore`] in SQL, one implementation for SQLite (embedded) and Postgres
//! (`DATABASE_URL`) through sqlx's `Any` driver. The schema (`migrations/`) is portable SQL,
//! applied by sqlx's migrator at startup. Every statement is bounded by a timeout, so a
//! database that hangs fails the write (which the flusher retries) instead of stalling it.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::AnyPool;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Executor, Row};

use super::{
    AMEND, Entry, Item, RecordError, RecordStore, SessionQuery, SessionRow, SessionSort,
    apply_amend, rfc3339_ms, usd,
};
use crate::config::RecordDatabase;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The record in a SQL database.
pub struct SqlRecord {
    pool: AnyPool,
    timeout: Duration,
}

impl SqlRecord {
    /// Connects (creating a SQLite file when needed) and applies the migrations.
    ///
    /// Postgres serializes concurrent migrators with an advisory lock. A SQLite file has no
    /// such lock, so instances started together on one file can collide (one finds a table
    /// the other just created, or the file locked while the other switches it to WAL): the
    /// loser opens again after a pause, and then finds the migrations applied.
    pub async fn connect(db: &RecordDatabase) -> Result<Self, RecordError> {
        let shared_file = matches!(db, RecordDatabase::Sqlite(p) if p != ":memory:");
        let attempts = if shared_file { 6 } else { 1 };
        let mut last = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            match Self::open(db).await {
                Ok(store) => return Ok(store),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    async fn open(db: &RecordDatabase) -> Result<Self, RecordError> {
        let url = db
            .url()
            .ok_or_else(|| RecordError::Unavailable("the record is off".into()))?;
        sqlx::any::install_default_drivers();
        let sqlite = matches!(db, RecordDatabase::Sqlite(_));
        let memory = matches!(db, RecordDatabase::Sqlite(p) if p == ":memory:");
        let mut opts = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(3))
            .max_connections(if memory {
                1
            } else if sqlite {
                4
            } else {
                8
            });
        if memory {
            // One connection that never closes: an in-memory database lives with it.
            opts = opts
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        if sqlite {
            opts = opts.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    Ok(())
                })
            });
        }
        let pool = opts.connect(&url).await?;
        if sqlite && !memory {
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| RecordError::Unavailable(format!("applying migrations: {e}")))?;
        Ok(Self {
            pool,
            timeout: Duration::from_secs(5),
        })
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, RecordError>>,
    ) -> Result<T, RecordError> {
        tokio::time::timeout(self.timeout, f)
            .await
            .map_err(|_| RecordError::Timeout)?
    }
}

/// What a batch adds to one session's row.
#[derive(Default)]
struct Totals {
    scenario: String,
    user_id: Option<String>,
    first_ms: i64,
    last_ms: i64,
    ended_ms: Option<i64>,
    turns: i64,
    tool_calls: i64,
    calls: i64,
    cost: i64,
}

impl Totals {
    fn add(&mut self, e: &Entry) {
        if self.scenario.is_empty() {
            self.scenario = e.scenario.clone();
            self.first_ms = e.at_ms;
        }
        if self.user_id.is_none() {
            self.user_id = e.user_id.clone();
        }
        self.first_ms = self.first_ms.min(e.at_ms);
        self.last_ms = self.last_ms.max(e.at_ms);
        match e.kind.as_str() {
            "turn.user" | "turn.assistant" => self.turns += 1,
            "tool.call" => self.tool_calls += 1,
            "call.started" => self.calls += 1,
            "call.ended" => self.ended_ms = Some(e.at_ms),
            _ => {}
        }
        self.cost += e.cost_nanousd;
    }
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

async fn amend(tx: &mut Tx<'_>, e: &Entry) -> Result<(), RecordError> {
    let Some(key) = &e.key else { return Ok(()) };
    let row = sqlx::query(
        "SELECT seq, body FROM record_items WHERE session_id = $1 AND item_key = $2 \
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(&e.session_id)
    .bind(key)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(()) };
    let seq: i64 = row.try_get("seq")?;
    let body: String = row.try_get("body")?;
    let mut data: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    apply_amend(&mut data, &e.data);
    sqlx::query("UPDATE record_items SET body = $1 WHERE session_id = $2 AND seq = $3")
        .bind(data.to_string())
        .bind(&e.session_id)
        .bind(seq)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn insert(tx: &mut Tx<'_>, e: &Entry) -> Result<bool, RecordError> {
    let r = sqlx::query(
        "INSERT INTO record_items \
         (session_id, seq, at_ms, kind, call_id, agent, item_key, cost_nanousd, body) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (session_id, seq) DO NOTHING",
    )
    .bind(&e.session_id)
    .bind(e.seq as i64)
    .bind(e.at_ms)
    .bind(&e.kind)
    .bind(e.call_id.clone())
    .bind(e.agent.clone())
    .bind(e.key.clone())
    .bind(e.cost_nanousd)
    .bind(e.data.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

async fn upsert_session(tx: &mut Tx<'_>, sid: &str, t: &Totals) -> Result<(), RecordError> {
    sqlx::query(
        "INSERT INTO record_sessions (session_id, scenario, user_id, started_at_ms, last_at_ms, \
         ended_at_ms, turns, tool_calls, calls, cost_nanousd) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (session_id) DO UPDATE SET \
         user_id = COALESCE(record_sessions.user_id, excluded.user_id), \
         started_at_ms = CASE WHEN excluded.started_at_ms < record_sessions.started_at_ms \
           THEN excluded.started_at_ms ELSE record_sessions.started_at_ms END, \
         last_at_ms = CASE WHEN excluded.last_at_ms > record_sessions.last_at_ms \
           THEN excluded.last_at_ms ELSE record_sessions.last_at_ms END, \
         ended_at_ms = COALESCE(excluded.ended_at_ms, record_sessions.ended_at_ms), \
         turns = record_sessions.turns + excluded.turns, \
         tool_calls = record_sessions.tool_calls + excluded.tool_calls, \
         calls = record_sessions.calls + excluded.calls, \
         cost_nanousd = record_sessions.cost_nanousd + excluded.cost_nanousd",
    )
    .bind(sid)
    .bind(&t.scenario)
    .bind(t.user_id.clone())
    .bind(t.first_ms)
    .bind(t.last_ms)
    .bind(t.ended_ms)
    .bind(t.turns)
    .bind(t.tool_calls)
    .bind(t.calls)
    .bind(t.cost)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn item_of(row: &AnyRow) -> Result<Item, RecordError> {
    let body: String = row.try_get("body")?;
    let cost: i64 = row.try_get("cost_nanousd")?;
    let at_ms: i64 = row.try_get("at_ms")?;
    Ok(Item {
        seq: row.try_get::<i64, _>("seq")? as u64,
        at: rfc3339_ms(at_ms),
        kind: row.try_get("kind")?,
        call_id: row.try_get("call_id")?,
        agent: row.try_get("agent")?,
        cost_usd: (cost != 0).then(|| usd(cost)),
        data: serde_json::from_str(&body).unwrap_or(Value::Null),
        key: row.try_get("item_key")?,
    })
}

fn session_of(row: &AnyRow) -> Result<SessionRow, RecordError> {
    let n = |c: &str| -> Result<u64, RecordError> { Ok(row.try_get::<i64, _>(c)?.max(0) as u64) };
    Ok(SessionRow {
        session_id: row.try_get("session_id")?,
        scenario: row.try_get("scenario")?,
        user_id: row.try_get("user_id")?,
        started_at: rfc3339_ms(row.try_get("started_at_ms")?),
        last_at: rfc3339_ms(row.try_get("last_at_ms")?),
        ended_at: row
            .try_get::<Option<i64>, _>("ended_at_ms")?
            .map(rfc3339_ms),
        turns: n("turns")?,
        tool_calls: n("tool_calls")?,
        calls: n("calls")?,
        cost_usd: usd(row.try_get("cost_nanousd")?),
        live: false,
    })
}

const SESSION_COLUMNS: &str = "session_id, scenario, user_id, started_at_ms, last_at_ms, \
     ended_at_ms, turns, tool_calls, calls, cost_nanousd";

#[async_trait]
impl RecordStore for SqlRecord {
    async fn write(&self, entries: &[Entry]) -> Result<(), RecordError> {
        self.bounded(async {
            let mut tx = self.pool.begin().await?;
            let mut erased: HashMap<&str, bool> = HashMap::new();
            let mut totals: HashMap<&str, Totals> = HashMap::new();
            for e in entries {
                let sid = e.session_id.as_str();
                if !erased.contains_key(sid) {
                    let gone =
                        sqlx::query("SELECT 1 AS x FROM record_erasures WHERE session_id = $1")
                            .bind(sid)
                            .fetch_optional(&mut *tx)
                            .await?
                            .is_some();
                    erased.insert(sid, gone);
                }
                if erased[sid] {
                    continue;
                }
                if e.kind == AMEND {
                    amend(&mut tx, e).await?;
                } else if insert(&mut tx, e).await? {
                    totals.entry(sid).or_default().add(e);
                }
            }
            for (sid, t) in &totals {
                upsert_session(&mut tx, sid, t).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn items(
        &self,
        session: &str,
        after: u64,
        kinds: Option<&[String]>,
        limit: u64,
    ) -> Result<Vec<Item>, RecordError> {
        self.bounded(async {
            let mut sql = String::from(
                "SELECT seq, at_ms, kind, call_id, agent, item_key, cost_nanousd, body \
                 FROM record_items WHERE session_id = $1 AND seq > $2",
            );
            let kinds = kinds.unwrap_or(&[]);
            if !kinds.is_empty() {
                let marks: Vec<String> = (0..kinds.len()).map(|i| format!("${}", i + 3)).collect();
                sql.push_str(&format!(" AND kind IN ({})", marks.join(", ")));
            }
            sql.push_str(&format!(" ORDER BY seq LIMIT ${}", kinds.len() + 3));
            let mut q = sqlx::query(&sql).bind(session).bind(after as i64);
            for k in kinds {
                q = q.bind(k);
            }
            let rows = q.bind(limit as i64).fetch_all(&self.pool).await?;
            rows.iter().map(item_of).collect()
        })
        .await
    }

    async fn session(&self, session: &str) -> Result<Option<SessionRow>, RecordError> {
        self.bounded(async {
            let sql =
                format!("SELECT {SESSION_COLUMNS} FROM record_sessions WHERE session_id = $1");
            let row = sqlx::query(&sql)
                .bind(session)
                .fetch_optional(&self.pool)
                .await?;
            row.as_ref().map(session_of).transpose()
        })
        .await
    }

    async fn sessions(&self, q: &SessionQuery) -> Result<(Vec<SessionRow>, u64), RecordError> {
        self.bounded(async {
            let mut clauses = Vec::new();
            let mut n = 0;
            let mut mark = || {
                n += 1;
                format!("${n}")
            };
            if q.from_ms.is_some() {
                clauses.push(format!("started_at_ms >= {}", mark()));
            }
            if q.to_ms.is_some() {
                clauses.push(format!("started_at_ms < {}", mark()));
            }
            if q.scenario.is_some() {
                clauses.push(format!("scenario = {}", mark()));
            }
            if q.user_id.is_some() {
                clauses.push(format!("user_id = {}", mark()));
            }
            let filter = if clauses.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", clauses.join(" AND "))
            };
            let order = match q.sort {
                SessionSort::StartedDesc => "started_at_ms DESC, session_id",
                SessionSort::StartedAsc => "started_at_ms ASC, session_id",
                SessionSort::CostDesc => "cost_nanousd DESC, started_at_ms DESC, session_id",
                SessionSort::LastDesc => "last_at_ms DESC, session_id",
            };
            let (l, o) = (mark(), mark());
            let list = format!(
                "SELECT {SESSION_COLUMNS} FROM record_sessions{filter} ORDER BY {order} LIMIT {l} OFFSET {o}"
            );
            let count = format!("SELECT COUNT(*) AS n FROM record_sessions{filter}");
            macro_rules! bind_filters {
                ($q:expr) => {{
                    let mut x = $q;
                    if let Some(v) = q.from_ms {
                        x = x.bind(v);
                    }
                    if let Some(v) = q.to_ms {
                        x = x.bind(v);
                    }
                    if let Some(v) = &q.scenario {
                        x = x.bind(v.clone());
                    }
                    if let Some(v) = &q.user_id {
                        x = x.bind(v.clone());
                    }
                    x
                }};
            }
            let rows = bind_filters!(sqlx::query(&list))
                .bind(q.limit as i64)
                .bind(q.offset as i64)
                .fetch_all(&self.pool)
                .await?;
            let total: i64 = bind_filters!(sqlx::query(&count))
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?;
            let rows = rows.iter().map(session_of).collect::<Result<Vec<_>, _>>()?;
            Ok((rows, total.max(0) as u64))
        })
        .await
    }

    async fn erase(&self, session: &str) -> Result<bool, RecordError> {
        self.bounded(async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "INSERT INTO record_erasures (session_id, erased_at_ms) VALUES ($1, $2) \
                 ON CONFLICT (session_id) DO NOTHING",
            )
            .bind(session)
            .bind(crate::clock::unix_now_ms() as i64)
            .execute(&mut *tx)
            .await?;
            let items = sqlx::query("DELETE FROM record_items WHERE session_id = $1")
                .bind(session)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let rows = sqlx::query("DELETE FROM record_sessions WHERE session_id = $1")
                .bind(session)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(items + rows > 0)
        })
        .await
    }

    async fn erased(&self, session: &str) -> Result<bool, RecordError> {
        self.bounded(async {
            Ok(
                sqlx::query("SELECT 1 AS x FROM record_erasures WHERE session_id = $1")
                    .bind(session)
                    .fetch_optional(&self.pool)
                    .await?
                    .is_some(),
            )
        })
        .await
    }

    async fn expire(&self, before_ms: i64) -> Result<u64, RecordError> {
        self.bounded(async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "DELETE FROM record_items WHERE session_id IN \
                 (SELECT session_id FROM record_sessions WHERE last_at_ms < $1)",
            )
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
            let n = sqlx::query("DELETE FROM record_sessions WHERE last_at_ms < $1")
                .bind(before_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(n)
        })
        .await
    }

    async fn ping(&self) -> Result<(), RecordError> {
        self.bounded(async {
            sqlx::query("SELECT 1 AS x").fetch_one(&self.pool).await?;
            Ok(())
        })
        .await
    }
}
