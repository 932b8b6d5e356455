//! Traces over OTLP to a loopback receiver, from two real instances on one Redis: a publish
//! through A continues the caller's `traceparent`, the envelope carries the trace, and the
//! delivery span on B links back to A's publishing span.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::channel::{API_KEY, Sess, next_json};
use crate::support::eventually;
use crate::support::redis::{RedisServer, spawn_instance_process, unique_prefix};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const UNSAMPLED: &str = "0af7651916cd43dd8448eb211c80319d";

/// Every span the receiver got, with the service that sent it.
async fn spans(receiver: &MockServer) -> Vec<(String, Span)> {
    let mut out = Vec::new();
    for req in receiver.received_requests().await.unwrap_or_default() {
        let Ok(export) = ExportTraceServiceRequest::decode(req.body.as_slice()) else {
            continue;
        };
        for rs in export.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                .and_then(|a| a.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    out.push((service.clone(), s));
                }
            }
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn attr(s: &Span, key: &str) -> Option<String> {
    s.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
        .map(|v| match v {
            opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s) => s.clone(),
            other => format!("{other:?}"),
        })
}

#[tokio::test]
async fn a_published_event_is_traced_from_the_request_to_the_delivery_on_another_instance() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let redis = RedisServer::start(false).await;
    let prefix = unique_prefix();
    let otel = |name: &str| {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.uri()),
            ("OTEL_SERVICE_NAME", name.to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ]
    };
    let model = crate::support::upstream_with(
        "/v1/responses",
        ResponseTemplate::new(200).set_body_json(crate::support::response_body("hi")),
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/v1/realtime/client_secrets"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(crate::support::client_secret_body()),
        )
        .mount(&model)
        .await;
    let mut env_a = otel("switchboard-a");
    // Logs at warn: an unsampled request's span then exists for no layer at all, and its
    // work must still stay out of the export (not start traces of its own).
    env_a.push(("RUST_LOG", "warn".to_owned()));
    env_a.push(("OPENAI_API_KEY", crate::support::UPSTREAM_KEY.to_owned()));
    env_a.push(("OPENAI_BASE_URL", format!("{}/v1", model.uri())));
    let (mut a, port_a) = spawn_instance_process(&redis, &prefix, &env_a);
    let (mut b, port_b) = spawn_instance_process(&redis, &prefix, &otel("switchboard-b"));
    let client = reqwest::Client::new();
    let boot_url = format!("http://127.0.0.1:{port_a}/api/session2?scenario_id=retail");
    let r = eventually("A comes up", Duration::from_secs(5), || async {
        client.get(&boot_url).send().await.ok()
    })
    .await;
    let boot = r.json::<serde_json::Value>().await.unwrap();
    let s = Sess {
        id: boot["session_id"].as_str().unwrap().to_owned(),
        token: boot["events"]["token"].as_str().unwrap().to_owned(),
        epoch: String::new(),
    };
    let ws_url = format!(
        "ws://127.0.0.1:{port_b}/api/ws?session_id={}&token={}",
        s.id, s.token
    );
    let mut ws = eventually("B comes up", Duration::from_secs(5), || async {
        tokio_tungstenite::connect_async(&ws_url)
            .await
            .ok()
            .map(|(w, _)| w)
    })
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "welcome");

    let resp = client
        .post(format!(
            "http://127.0.0.1:{port_a}/api/sessions/{}/events",
            s.id
        ))
        .bearer_auth(API_KEY)
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .json(&json!({"type": "x.traced", "data": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let ev = next_json(&mut ws).await;
    assert_eq!(ev["type"], "x.traced");
    assert_eq!(
        ev["trace_id"], TRACE,
        "the envelope carries the caller's trace"
    );
    let publish_span_id = ev["span_id"]
        .as_str()
        .expect("and the publishing span")
        .to_owned();

    // An upstream call inside another traced request.
    let resp = client
        .post(format!("http://127.0.0.1:{port_a}/api/responses"))
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .json(&json!({"model": "gpt-4o-mini", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // A caller that did not sample its trace: nothing of this request is exported.
    let resp = client
        .post(format!("http://127.0.0.1:{port_a}/api/responses"))
        .header("traceparent", format!("00-{UNSAMPLED}-{PARENT}-00"))
        .json(&json!({"model": "gpt-4o-mini", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Wait for both instances' exports.
    let mut got = Vec::new();
    for _ in 0..100 {
        got = spans(&receiver).await;
        let delivered = got
            .iter()
            .any(|(svc, s)| svc.contains("switchboard-b") && s.name == "deliver");
        let published = got.iter().any(|(_, s)| s.name == "broker.publish");
        let upstream = got.iter().any(|(_, s)| {
            s.name == "upstream" && attr(s, "endpoint").as_deref() == Some("responses")
        });
        if delivered && published && upstream {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let find = |pred: &dyn Fn(&(String, Span)) -> bool| got.iter().find(|x| pred(x)).cloned();
    let (_, http) = find(&|(svc, s)| {
        svc.contains("switchboard-a") && s.name == "POST /api/sessions/{id}/events"
    })
    .unwrap_or_else(|| {
        panic!(
            "the request span, named by route: {:?}",
            got.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
        )
    });
    assert_eq!(
        hex(&http.trace_id),
        TRACE,
        "the incoming traceparent is honoured"
    );
    assert_eq!(hex(&http.parent_span_id), PARENT);
    assert_eq!(
        attr(&http, "http.route").as_deref(),
        Some("/api/sessions/{id}/events")
    );
    assert!(
        attr(&http, "http.response.status_code").is_some_and(|v| v.contains("202")),
        "the status is on the request span"
    );
    let (_, publish) = find(&|(_, s)| s.name == "broker.publish").unwrap();
    assert_eq!(hex(&publish.trace_id), TRACE);
    assert_eq!(
        hex(&publish.parent_span_id),
        hex(&http.span_id),
        "publish is inside the request"
    );
    assert_eq!(hex(&publish.span_id), publish_span_id);
    let (_, deliver) = find(&|(svc, s)| svc.contains("switchboard-b") && s.name == "deliver")
        .expect("a delivery span on B");
    assert!(
        deliver
            .links
            .iter()
            .any(|l| hex(&l.trace_id) == TRACE && hex(&l.span_id) == publish_span_id),
        "B's delivery links to A's publish span: {:?}",
        deliver.links
    );
    let (_, up) =
        find(&|(_, s)| s.name == "upstream" && attr(s, "endpoint").as_deref() == Some("responses"))
            .expect("an upstream span");
    assert_eq!(hex(&up.trace_id), TRACE);
    assert_eq!(attr(&up, "endpoint").as_deref(), Some("responses"));
    assert_eq!(attr(&up, "model").as_deref(), Some("gpt-4o-mini"));
    assert!(attr(&up, "http.response.status_code").is_some_and(|v| v.contains("200")));
    let (_, responses_http) =
        find(&|(_, s)| s.name == "POST /api/responses").expect("its request span");
    assert_eq!(hex(&up.parent_span_id), hex(&responses_http.span_id));
    assert!(
        !got.iter().any(|(_, s)| hex(&s.trace_id) == UNSAMPLED),
        "an unsampled caller's request made no spans"
    );
    let upstream_traces: Vec<String> = got
        .iter()
        .filter(|(_, s)| {
            s.name == "upstream" && attr(s, "endpoint").as_deref() == Some("responses")
        })
        .map(|(_, s)| hex(&s.trace_id))
        .collect();
    assert_eq!(
        upstream_traces,
        vec![TRACE.to_owned()],
        "the unsampled request's upstream call started no trace of its own"
    );
    let _ = a.start_kill();
    let _ = b.start_kill();
    let _ = a.wait().await;
    let _ = b.wait().await;
}
