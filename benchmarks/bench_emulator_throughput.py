"""Figure 6: the emulator's throughput for properties polls (GET with a valid token).

One emulator process; a load generator with many keep-alive connections on the same machine
(``wrk`` if installed, else a small asyncio HTTP/1.1 client). Both share the machine's cores, as
they would on a 2-core CI runner. Reports requests/s (median of repeats) and the emulator's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import time
from typing import Any

from common import ACCOUNT_ID, Emulator, median, plot_path, pyplot, say, write_result

NAME = "emulator_throughput"


def run_wrk(url: str, path: str, token: str, connections: int, seconds: float) -> dict[str, Any]:
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "-H",
        f"Authorization: Bearer {token}",
        f"{url}{path}",
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    p50 = re.search(r"50%\s+([\d.]+)(\w+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(\w+)", out)
    return {
        "rps": rate,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(0) if errors else None,
        "p50_ms": _ms(p50),
        "p99_ms": _ms(p99),
    }


def _ms(match: re.Match[str] | None) -> float | None:
    if match is None:
        return None
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}.get(unit, 1.0)


async def _python_load(
    host: str, port: int, path: str, *, token: str, connections: int, seconds: float
) -> dict:
    """A minimal keep-alive HTTP/1.1 load generator (for machines without wrk)."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: application/json\r\n\r\n"
    ).encode()
    done = 0
    bad = 0
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def client() -> None:
        nonlocal done, bad
        reader, writer = await asyncio.open_connection(host, port)
        while time.monotonic() < deadline:
            started = time.monotonic()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            latencies.append(time.monotonic() - started)
            done += 1
            bad += status != 200
        writer.close()

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(connections)))
    elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "rps": done / elapsed,
        "non_2xx": bad,
        "socket_errors": None,
        "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else None,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loader", choices=["auto", "wrk", "python"], default="auto")
    args = parser.parse_args()
    loader = args.loader
    if loader == "auto":
        loader = "wrk" if shutil.which("wrk") else "python"

    cases: list[dict[str, Any]] = []
    with Emulator(startup_delay=60, time_scale=1) as emu:
        token = emu.token()
        (session_id,) = emu.create_sessions(1, token)
        host, port = emu.url.split("//", 1)[1].rsplit(":", 1)
        paths = {
            "v1 properties": emu.properties_path(session_id),
            "2021-01-01 get": f"/accounts/{ACCOUNT_ID}/sessions/{session_id}?api-version=2021-01-01",
        }
        # Warm up (imports, first connections).
        run_wrk(emu.url, paths["v1 properties"], token, 8, 1) if loader == "wrk" else None
        for label, path in paths.items():
            for connections in (16, 64, 256):
                runs = []
                for _ in range(args.repeats):
                    cpu0, gets0, t0 = emu.cpu_seconds(), emu.counts()["get"], time.monotonic()
                    if loader == "wrk":
                        result = run_wrk(emu.url, path, token, connections, args.seconds)
                    else:
                        result = asyncio.run(
                            _python_load(
                                host,
                                int(port),
                                path,
                                token=token,
                                connections=connections,
                                seconds=args.seconds,
                            )
                        )
                    wall = time.monotonic() - t0
                    result["emulator_cpu_util"] = (emu.cpu_seconds() - cpu0) / wall
                    result["emulator_counted"] = emu.counts()["get"] - gets0
                    runs.append(result)
                case = {
                    "api": label,
                    "connections": connections,
                    "rps": median(r["rps"] for r in runs),
                    "rps_runs": [round(r["rps"]) for r in runs],
                    "p50_ms": median(r["p50_ms"] for r in runs if r["p50_ms"] is not None),
                    "p99_ms": median(r["p99_ms"] for r in runs if r["p99_ms"] is not None),
                    "non_2xx": sum(r["non_2xx"] for r in runs),
                    "emulator_cpu_util": median(r["emulator_cpu_util"] for r in runs),
                    # What the emulator itself counted, as a check on the load generator's figure.
                    "emulator_counted_rps": median(r["emulator_counted"] / args.seconds for r in runs),
                    "socket_errors": [r["socket_errors"] for r in runs if r["socket_errors"]],
                }
                say(f"fig6 {label} c={connections}: {case['rps']:.0f} req/s {case['rps_runs']}")
                cases.append(case)

    headline = max((c for c in cases if c["api"] == "v1 properties"), key=lambda c: c["rps"])
    write_result(
        NAME,
        {
            "loader": loader,
            "seconds": args.seconds,
            "repeats": args.repeats,
            "cases": cases,
            "headline_rps": headline["rps"],
            "headline_connections": headline["connections"],
            "goal_rps": 1000,
        },
    )
    plot(cases)


def plot(cases: list[dict[str, Any]]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    apis = sorted({c["api"] for c in cases})
    conns = sorted({c["connections"] for c in cases})
    width = 0.8 / len(apis)
    for i, api in enumerate(apis):
        values = [next(c["rps"] for c in cases if c["api"] == api and c["connections"] == n) for n in conns]
        xs = [j + i * width for j in range(len(conns))]
        ax.bar(xs, values, width, label=api)
        for x, v in zip(xs, values, strict=True):
            ax.annotate(f"{v:,.0f}", (x, v), ha="center", va="bottom", fontsize=7)
    ax.axhline(1000, color="red", linestyle="--", linewidth=1, label="goal 1,000 req/s")
    ax.set_xticks([j + width * (len(apis) - 1) / 2 for j in range(len(conns))])
    ax.set_xticklabels([f"{n} connections" for n in conns])
    ax.set_ylabel("requests/s (median)")
    ax.set_ylim(0, max(c["rps"] for c in cases) * 1.35)
    ax.set_title("Emulator throughput: session reads with a valid token")
    ax.legend(fontsize=8, loc="upper right", ncol=3)
    fig.tight_layout()
    fig.savefig(plot_path(NAME), dpi=110)


if __name__ == "__main__":
    main()
