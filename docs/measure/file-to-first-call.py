#!/usr/bin/env python3
"""New plugin file -> first call served, as a user of the release binary sees it.

Usage: file-to-first-call.py CAPSTAN_BINARY PLUGIN.wasm RUNS

Each run starts `capstan run` (embedded API server) on an empty plugins directory and a fresh
precompiled cache, waits for it to run, renames the plugin file into the directory and times
until the host logs "plugin loaded" (compiled, instantiated, `describe` answered). Prints each
run and the median, in milliseconds.
"""
import os, queue, shutil, statistics, subprocess, sys, tempfile, threading, time

binary, wasm, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
name = os.path.basename(wasm)
times = []
for _ in range(runs):
    base = tempfile.mkdtemp(prefix="first-call-")
    plugins, stage = os.path.join(base, "plugins"), os.path.join(base, "stage")
    os.mkdir(plugins)
    os.mkdir(stage)
    shutil.copy(wasm, os.path.join(stage, name))
    host = subprocess.Popen(
        [binary, "run", "--plugins", plugins, "--cache-dir", os.path.join(base, "cache"),
         "--state-dir", os.path.join(base, "state"), "--http-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put((time.monotonic(), l)) for l in host.stdout],
                     daemon=True).start()

    def until(text, deadline):
        while time.monotonic() < deadline:
            try:
                at, line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if text in line:
                return at
        sys.exit(f"no {text!r} in time")

    until("capstan running", time.monotonic() + 60)
    time.sleep(2)  # the host settles
    start = time.monotonic()
    os.rename(os.path.join(stage, name), os.path.join(plugins, name))
    times.append(until("plugin loaded", start + 60) - start)
    host.terminate()
    host.wait()
    shutil.rmtree(base, ignore_errors=True)
ms = [round(t * 1000) for t in times]
print(f"{name}: median {round(statistics.median(times) * 1000)} ms, runs {ms}")
