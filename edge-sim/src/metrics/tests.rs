//! Tests of the edge's metrics as a scrape shows them.
use std::time::Duration;

use super::*;

#[test]
fn encodes_counters() {
    let m = Metrics::default();
    m.tunnels_created.inc();
    m.admin_request("GET", 200);
    let text = m.encode();
    assert!(
        text.contains("ringtun_edge_tunnels_created_total 1"),
        "{text}"
    );
    assert!(
        text.contains("ringtun_edge_admin_requests_total{method=\"GET\",code=\"200\"} 1"),
        "{text}"
    );
}

#[test]
fn admin_labels_are_a_closed_set() {
    let m = Metrics::default();
    for i in 0..500 {
        m.admin_request(&format!("M{i}"), 401);
        m.admin_request("get", 401);
    }
    m.admin_request("PATCH", 1000);
    let text = m.encode();
    assert!(
        text.contains("ringtun_edge_admin_requests_total{method=\"other\",code=\"401\"} 1000"),
        "{text}"
    );
    assert!(
        text.contains("ringtun_edge_admin_requests_total{method=\"PATCH\",code=\"other\"} 1"),
        "{text}"
    );
    assert_eq!(
        text.matches("ringtun_edge_admin_requests_total{").count(),
        2
    );
}

#[test]
fn hostname_labels_are_dns_names() {
    let m = Metrics::default();
    let long = format!("{}.example.com", "a".repeat(300));
    for host in [
        "a\"}.example.com",
        "a\\b.example.com",
        "a b.example.com",
        long.as_str(),
        "",
    ] {
        m.host_requests(host).inc();
    }
    m.host_requests("ok-1_x.example.com").inc();
    let text = m.encode();
    assert!(
        text.contains("ringtun_edge_requests_total{hostname=\"other\"} 5"),
        "{text}"
    );
    assert!(
        text.contains("ringtun_edge_requests_total{hostname=\"ok-1_x.example.com\"} 1"),
        "{text}"
    );
    assert_eq!(text.matches("ringtun_edge_requests_total{").count(), 2);
}

#[test]
fn per_worker_metrics_sum_every_thread() {
    let m = Metrics::default();
    std::thread::scope(|s| {
        for _ in 0..5 {
            s.spawn(|| {
                for _ in 0..1000 {
                    m.public_requests.inc();
                    m.bytes_out.inc_by(2);
                    m.request_duration.observe(Duration::from_millis(1));
                }
            });
        }
    });
    assert_eq!(m.public_requests.get(), 5000);
    assert_eq!(m.request_duration.count(), 5000);
    let text = m.encode();
    for want in [
        "ringtun_edge_public_requests_total 5000",
        "ringtun_edge_bytes_total{direction=\"out\"} 10000",
        "ringtun_edge_request_duration_seconds_count 5000",
        "ringtun_edge_request_duration_seconds_bucket{le=\"0.001\"} 5000",
    ] {
        assert!(text.contains(want), "{want} missing in {text}");
    }
}

#[test]
fn encodes_request_metrics() {
    let m = Metrics::default();
    m.host_requests("app.example.com").inc();
    m.host_requests("app.example.com").inc();
    m.bytes_in.inc_by(10);
    m.retries_refused.inc();
    m.request_duration.observe(Duration::from_millis(3));
    m.request_duration.observe(Duration::from_secs(60));
    let text = m.encode();
    for want in [
        "ringtun_edge_requests_total{hostname=\"app.example.com\"} 2",
        "ringtun_edge_bytes_total{direction=\"in\"} 10",
        "ringtun_edge_bytes_total{direction=\"out\"} 0",
        "ringtun_edge_retries_total{reason=\"refused\"} 1",
        "ringtun_edge_retries_total{reason=\"link_lost\"} 0",
        "ringtun_edge_request_duration_seconds_count 2",
        "ringtun_edge_request_duration_seconds_bucket{le=\"0.005\"} 1",
        "ringtun_edge_request_duration_seconds_bucket{le=\"+Inf\"} 2",
        "ringtun_edge_draining_connectors 0",
        "ringtun_edge_process_allocations_total ",
    ] {
        assert!(text.contains(want), "{want} missing in {text}");
    }
}

#[test]
fn public_errors_retries_and_limit_hits_sum_every_thread() {
    let m = Metrics::default();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..250 {
                    m.public_error("no_route");
                    m.retries_refused.inc();
                    m.limits.hit(crate::limit::Limit::TunnelStreams, &"t");
                }
            });
        }
    });
    m.public_error("a_cause_not_in_the_list");
    let text = m.encode();
    for want in [
        "ringtun_edge_public_errors_total{cause=\"no_route\"} 1000",
        "ringtun_edge_public_errors_total{cause=\"origin\"} 0",
        "ringtun_edge_public_errors_total{cause=\"a_cause_not_in_the_list\"} 1",
        "ringtun_edge_retries_total{reason=\"refused\"} 1000",
        "ringtun_edge_limit_hits_total{reason=\"tunnel_streams\"} 1000",
    ] {
        assert!(text.contains(want), "{want} missing in {text}");
    }
}
