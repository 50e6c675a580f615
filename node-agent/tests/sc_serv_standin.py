"""A STAND-IN for SHOUTcast DNAS 2 (`sc_serv`), which is proprietary and cannot be installed
on a test machine. It is NOT sc_serv: it speaks just enough of what the agent relies on for
the supervisor tests in supervisor_shoutcast.rs to drive the plugin's lifecycle.

- Reads the `key=value` config named by its one argument (`;`/`#`/`[` lines are comments).
- Writes its pid to `pidfile`, removes it on a clean exit (SIGTERM: exit status 0).
- Serves `/statistics?json=1` on `portbase` in the documented layout.
- Accepts a 1.x source on `portlegacy`: the password line, answered `OK2`, then `icy-*`
  header lines up to a blank line (liquidsoap's `output.shoutcast` sends them; a bare test
  client may send none), then audio until the source hangs up; a wrong password is answered
  `invalid password`. One source at a time, as sc_serv admits one per stream: a second one is
  answered `stream in use` and closed (the real server's answer is not modelled).
- Relays the source's audio to listeners of `streampath_1` (no ICY metadata, no limits).
- Reports, besides the documented fields, `servertitle` (the source's `icy-name`) and two
  fields of its own, prefixed `standin_`: the audio bytes the source sent and the first four
  of them in hex, so tests can check that audio arrived.
"""

import json
import os
import queue
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

config = {}
with open(sys.argv[1], encoding="utf-8") as f:
    for line in f:
        line = line.rstrip("\n")
        if not line or line[0] in ";#[" or "=" not in line:
            continue
        key, value = line.split("=", 1)
        config[key.strip().lower()] = value

address = config.get("destip", "0.0.0.0")
portbase = int(config["portbase"])
portlegacy = int(config.get("portlegacy", portbase + 1))
pidfile = config["pidfile"]
sources = 0
title = ""
audio_bytes = 0
audio_head = b""
listeners = []
lock = threading.Lock()


def finish(*_):
    try:
        os.unlink(pidfile)
    except OSError:
        pass
    os._exit(0)


signal.signal(signal.SIGTERM, finish)


class Status(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == config.get("streampath_1", "/stream"):
            self.relay()
            return
        if self.path != "/statistics?json=1":
            self.send_response(404)
            self.end_headers()
            return
        with lock:
            active, name, received, head = sources, title, audio_bytes, audio_head
        body = json.dumps(
            {
                "totalstreams": 1,
                "activestreams": active,
                "currentlisteners": 0,
                "peaklisteners": 0,
                "maxlisteners": int(config.get("maxuser", "32")),
                "uniquelisteners": 0,
                "averagetime": 0,
                "version": "2.6.1.777 (stand-in)",
                "standin_source_bytes": received,
                "standin_audio_head": head.hex(),
                "streams": [
                    {
                        "id": 1,
                        "currentlisteners": 0,
                        "streamstatus": 1 if active else 0,
                        "streampath": config.get("streampath_1", "/stream"),
                        "servertitle": name,
                    }
                ],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def relay(self):
        q = queue.Queue(maxsize=256)
        self.send_response(200)
        self.send_header("Content-Type", "audio/mpeg")
        self.end_headers()
        with lock:
            listeners.append(q)
        try:
            while True:
                self.wfile.write(q.get())
        except OSError:
            pass
        finally:
            with lock:
                listeners.remove(q)

    def log_message(self, *_):
        pass


def read_line(conn):
    line = b""
    while not line.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            return None
        line += chunk
    return line


def source(conn):
    global sources, title, audio_bytes, audio_head
    with conn:
        line = read_line(conn)
        if line is None:
            return
        if line.strip().decode("utf-8", "replace") != config.get("password"):
            conn.sendall(b"invalid password\r\n")
            return
        with lock:
            busy = sources > 0
            if not busy:
                sources += 1
        if busy:
            conn.sendall(b"stream in use\r\n")
            return
        try:
            conn.sendall(b"OK2\r\nicy-caps:11\r\n\r\n")
            while True:
                line = read_line(conn)
                if line is None:
                    return
                text = line.strip().decode("utf-8", "replace")
                if not text:
                    break
                key, _, value = text.partition(":")
                if key.lower() == "icy-name":
                    with lock:
                        title = value
            while True:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                with lock:
                    if len(audio_head) < 4:
                        audio_head = (audio_head + chunk)[:4]
                    audio_bytes += len(chunk)
                    for q in listeners:
                        try:
                            q.put_nowait(chunk)
                        except queue.Full:
                            pass
        finally:
            with lock:
                sources -= 1
                title = ""


def legacy(listener):
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=source, args=(conn,), daemon=True).start()


# Both ports are bound before the pid file says the server is up.
legacy_listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
legacy_listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
legacy_listener.bind((address, portlegacy))
legacy_listener.listen(8)
server = ThreadingHTTPServer((address, portbase), Status)
threading.Thread(target=legacy, args=(legacy_listener,), daemon=True).start()
with open(pidfile, "w", encoding="utf-8") as f:
    f.write(f"{os.getpid()}\n")
print("stand-in sc_serv ready", flush=True)
server.serve_forever()
