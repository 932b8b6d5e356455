#!/usr/bin/env python3
"""Redis CPU per published event: the one-event publish script against the batch script.

Starts a private redis-server on a free loopback port, loads both scripts from
src/broker/lua, and sends N publishes over 1000 sessions (200-byte payloads, pipelined 16
calls deep), as single calls and as batches of each size asked for, all twice. Prints the Redis
server's own CPU (user + sys from INFO cpu) per event, which does not depend on how fast
this client is. Needs the `redis` package (the test venv has it):

    .venv/bin/python scripts/bench-publish-script.py [--events 100000] [--sizes 1,4,16,32]
"""

import argparse
import os
import socket
import subprocess
import tempfile
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA = os.path.join(ROOT, "src", "broker", "lua")
SESSIONS = 1000
HEAD = '{"type":"x.bench","session_id":"s","seq":'
TAIL = ',"id":"0190","ts":"2026-12-03T00:00:00.000Z","data":{"p":"' + "x" * 200 + '"}}'


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lua(*names):
    return "".join(open(os.path.join(LUA, n)).read() for n in names)


def cpu(r):
    info = r.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def run(r, sha, size, events, batch):
    """Redis CPU seconds for `events` publishes, `size` per call (batch script) or one each."""
    pipe = r.pipeline(transaction=False)
    before, sent, i = cpu(r), 0, 0
    while sent < events:
        if batch:
            args = [size, 100, 300000, "PUBLISH", "0123456789abcd"]
            for _ in range(size):
                tag = f"sb:{{s{i % SESSIONS}}}"
                args += [tag, 300000, 600000, "0", "", HEAD, TAIL, "id"]
                i += 1
            pipe.evalsha(sha, 0, *args)
        else:
            tag = f"sb:{{s{i % SESSIONS}}}"
            i += 1
            keys = [f"{tag}:meta", f"{tag}:events", f"{tag}:idem:", f"{tag}:state"]
            pipe.evalsha(sha, 4, *keys, tag, 100, 300000, "0123456789abcdef", HEAD, TAIL,
                         "id", "0", 300000, "PUBLISH", 600000, "0")
        sent += size if batch else 1
        if len(pipe) >= 16:
            for reply in pipe.execute():
                # every event published (the batch reply holds a flag per event)
                assert all(f == 1 for f in reply[0::2]), reply[:2]
    for reply in pipe.execute():
        assert reply[0] == 1 and (not batch or reply[-2] == 1), reply[:2]
    return cpu(r) - before


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100000)
    ap.add_argument("--sizes", default="1,4,16,32")
    args = ap.parse_args()
    port = free_port()
    work = tempfile.mkdtemp(prefix="sb-lua-bench-")
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", work],
        stdout=subprocess.DEVNULL,
    )
    try:
        r = redis.Redis(port=port)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        for n in range(SESSIONS):  # live sessions: the scripts check their state key
            r.set(f"sb:{{s{n}}}:state", "{}")
        single = r.script_load(lua("epoch.lua", "publish.lua"))
        batch = r.script_load(lua("epoch.lua", "publish_batch.lua"))
        # Warm up: fill every history to its cap, so each run below trims as it appends.
        run(r, batch, 16, SESSIONS * 150, True)
        rows = []
        for _ in range(2):
            rows.append(("one call each", run(r, single, 1, args.events, False)))
            for size in (int(s) for s in args.sizes.split(",")):
                rows.append((f"batch of {size}", run(r, batch, size, args.events, True)))
        for name, secs in rows:
            print(f"{name:>14}: {secs / args.events * 1e6:6.2f} us of Redis CPU per event")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
