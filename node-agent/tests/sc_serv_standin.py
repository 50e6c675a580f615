"""A STAND-IN for SHOUTcast DNAS 2 (`sc_serv`), which is proprietary and cannot be installed
on a test machine. It is NOT sc_serv: it speaks just enough of what the agent relies on for
the supervisor tests in supervisor_shoutcast.rs to drive the plugin's lifecycle.

- Reads the `key=value` config named by its one argument (`;`/`#`/`[` lines are comments).
- Writes its pid to `pidfile`, removes it on a clean exit (SIGTERM: exit status 0).
- Serves `/statistics?json=1` on `portbase` in the documented layout.
- Accepts a 1.x source on `portlegacy`: the password line, answered `OK2`, then audio until
  the source hangs up; a wrong password is answered `invalid password`.
"""

import json
import os
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
        if self.path != "/statistics?json=1":
            self.send_response(404)
            self.end_headers()
            return
        with lock:
            active = sources
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
                "streams": [
                    {
                        "id": 1,
                        "currentlisteners": 0,
                        "streamstatus": 1 if active else 0,
                        "streampath": config.get("streampath_1", "/stream"),
                    }
                ],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


def source(conn):
    global sources
    with conn:
        line = b""
        while not line.endswith(b"\n"):
            chunk = conn.recv(1)
            if not chunk:
                return
            line += chunk
        if line.strip().decode("utf-8", "replace") != config.get("password"):
            conn.sendall(b"invalid password\r\n")
            return
        conn.sendall(b"OK2\r\nicy-caps:11\r\n\r\n")
        with lock:
            sources += 1
        try:
            while conn.recv(4096):
                pass
        finally:
            with lock:
                sources -= 1


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
