"""bench/compare.py: the side-by-side ratios, the targets set against LiteLLM, the
bottleneck check and the machine's noise, from synthetic results (no processes, no
network: the bench itself is not part of the suite)."""

from __future__ import annotations

import math

from bench import compare


def results(**over) -> dict:
    r = {
        "saturated": {
            "canned non-stream": {
                "direct": {"rps": 50000.0},
                "gateway": {"rps": 800.0},
                "litellm": {"rps": 80.0},
                "cpu": {
                    "gateway": 1.3,
                    "postgres": 0.25,
                    "redis": 0.15,
                    "load generator": 0.03,
                    "other": 0.1,
                },
                "litellm_cpu": {"litellm": 1.9, "load generator": 0.01, "other": 0.4},
            }
        },
        "single": {
            "canned": {
                "direct": {"p50_ms": 0.10, "ttfb_p50_ms": 0.10, "other": 0.0},
                "gateway": {"p50_ms": 2.10, "ttfb_p50_ms": 1.10, "other": 0.0},
                "litellm": {"p50_ms": 30.10, "ttfb_p50_ms": 20.10, "other": 0.0},
                "direct_stream": {"p50_ms": 0.20, "ttfb_p50_ms": 0.10, "other": 0.0},
                "gateway_stream": {"p50_ms": 2.20, "ttfb_p50_ms": 1.10, "other": 0.0},
                "litellm_stream": {"p50_ms": 40.20, "ttfb_p50_ms": 20.10, "other": 0.0},
            }
        },
        "slow": {
            "connections": 500,
            "direct": {"rps": 200.0, "avg_ms": 2000.0},
            "gateway": {"rps": 190.0, "avg_ms": 2100.0},
            "litellm": {"rps": 60.0, "avg_ms": 8000.0},
            "cpu": {"other": 0.3},
        },
        "enforcement": {"on_all": [80.0, 90.0], "off_all": [100.0, 100.0], "ratio": 85.0},
        "rollups": {"events": 100000, "events_per_s": 20000.0},
    }
    r.update(over)
    return r


def test_side_by_side_puts_each_phase_and_its_ratios_in_a_row():
    rows = {row.what: row for row in compare.side_by_side(results())}
    sat = rows["saturated req/s, canned non-stream"]
    assert (sat.direct, sat.litellm, sat.portal) == ("50,000", "80", "800")
    assert sat.vs_litellm == "10.0x"
    assert sat.vs_direct == "1.6 %"
    cpu = rows["CPU ms per request (proxy + Postgres + Redis), saturated canned"]
    assert (cpu.litellm, cpu.portal, cpu.vs_litellm) == ("23.75", "2.12", "1/11.2")
    one = rows["one client, added p50 ms (non-stream)"]
    assert (one.litellm, one.portal, one.vs_litellm) == ("30.00", "2.00", "1/15.0")
    ttfb = rows["one client, added TTFB p50 ms (stream)"]
    assert (ttfb.litellm, ttfb.portal, ttfb.vs_litellm) == ("20.00", "1.00", "1/20.0")
    slow = rows["500 concurrent on the 2 s upstream, sustained req/s"]
    # Little's law: 500 connections / mean latency.
    assert (slow.direct, slow.litellm, slow.portal) == ("250.0", "62.5", "238.1")
    assert slow.vs_direct == "95.2 %"
    assert slow.vs_litellm == "3.8x"
    assert rows["enforcement on vs off (median of rounds)"].portal == "85.0 % (rounds 80, 90 %)"
    assert rows["rollups, events/s (100,000 events)"].portal == "20,000"


def test_a_run_without_litellm_shows_dashes_not_ratios():
    r = results()
    del r["saturated"]["canned non-stream"]["litellm"]
    del r["slow"]["litellm"]
    rows = {row.what: row for row in compare.side_by_side(r)}
    assert rows["saturated req/s, canned non-stream"].litellm == "-"
    assert rows["saturated req/s, canned non-stream"].vs_litellm == "-"
    assert rows["500 concurrent on the 2 s upstream, sustained req/s"].vs_litellm == "-"
    assert compare.peer_targets(r)[0][0] == "one client added p50 vs LiteLLM's"


def test_peer_targets_judge_the_ratios_at_their_lines():
    verdicts = {name: met for name, _, _, met in compare.peer_targets(results())}
    assert verdicts == {
        "saturated throughput vs LiteLLM": True,  # exactly 10x
        "one client added p50 vs LiteLLM's": True,  # 2.0 of 30.0 ms
        "rollups": True,
    }
    slower = results()
    slower["saturated"]["canned non-stream"]["gateway"]["rps"] = 799.0
    slower["single"]["canned"]["gateway"]["p50_ms"] = 3.2  # adds 3.1 ms: over 1/10 of 30.0
    slower["rollups"]["events_per_s"] = 1999.0
    assert [met for *_, met in compare.peer_targets(slower)] == [False, False, False]


def test_bottleneck_wants_the_proxy_far_busier_than_the_load_generator():
    assert compare.bottleneck({"gateway": 1.3, "load generator": 0.03}) == (1.3, 0.03, True)
    assert compare.bottleneck({"gateway": 0.5, "load generator": 0.3})[2] is False
    assert (
        compare.bottleneck({"gateway": 1.9, "load generator": 0.9})[2] is False
    )  # wrk near a core
    assert compare.bottleneck({"litellm": 1.9, "load generator": 0.01}, "litellm")[2] is True
    proxy, _, bound = compare.bottleneck({"load generator": 0.01})
    assert math.isnan(proxy) and bound is False
    lines = compare.bottleneck_lines(results()["saturated"])
    assert lines == [
        "   canned non-stream, Portal: proxy 1.30 cores, load generator 0.03: the proxy is the bottleneck",
        "   canned non-stream, LiteLLM: proxy 1.90 cores, load generator 0.01: the proxy is the bottleneck",
    ]


def test_noise_counts_every_other_reading_and_says_when_the_machine_was_noisy():
    n = compare.noise(results())
    # saturated cpu 0.1 and litellm_cpu 0.4, six single readings of 0.0, slow 0.3
    assert n["measurements"] == 9
    assert n["noisy"] == 2
    assert n["max"] == 0.4
    line = compare.noise_line(n)
    assert line.startswith("the machine was NOISY: other processes used >= 0.25 cores in 2 of 9")
    assert "saturated.canned non-stream.litellm_cpu 0.40" in line
    quiet = results(slow={"connections": 1, "direct": {}, "gateway": {}, "cpu": {"other": 0.1}})
    quiet["saturated"]["canned non-stream"]["litellm_cpu"]["other"] = 0.2
    assert compare.noise_line(compare.noise(quiet)).startswith("the machine was quiet")


def test_noise_reads_the_enforcement_rounds_too():
    loads = compare.other_loads({"enforcement": {"other_all": [0.1, 0.5]}})
    assert loads == [("enforcement.other_all[0]", 0.1), ("enforcement.other_all[1]", 0.5)]


def test_markdown_heads_the_table_with_the_machine():
    machine = {
        "date": "2026-12-01 22:00 UTC",
        "commit": "abc1234",
        "nproc": 2,
        "cpu": "Intel(R) Xeon(R) Processor",
        "litellm": "1.108.7",
    }
    lines = compare.markdown(compare.side_by_side(results()), machine)
    assert lines[0] == (
        "2026-12-01 22:00 UTC, commit abc1234, 2 cores (Intel(R) Xeon(R) Processor), LiteLLM 1.108.7"
    )
    assert lines[2].startswith("| what | direct | LiteLLM | Portal |")
    assert "| saturated req/s, canned non-stream | 50,000 | 80 | 800 | 10.0x | 1.6 % |" in lines


def test_cpu_model_reads_proc_cpuinfo():
    text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n"
    assert compare.cpu_model(text) == "Intel(R) Xeon(R) Processor"
    assert compare.cpu_model("") == "unknown"


def test_a_figure_with_failed_requests_in_it_is_marked_and_meets_no_target():
    r = results()
    r["saturated"]["canned non-stream"]["gateway"]["errors"] = 1200  # fast 429s
    r["slow"]["litellm"]["errors"] = 3
    rows = {row.what: row for row in compare.side_by_side(r)}
    assert rows["saturated req/s, canned non-stream"].portal == "800 (1,200 errors)"
    assert rows["500 concurrent on the 2 s upstream, sustained req/s"].litellm == "62.5 (3 errors)"
    name, measured, _, met = compare.peer_targets(r)[0]
    assert (name, measured, met) == ("saturated throughput vs LiteLLM", "10.0x, with errors", False)
