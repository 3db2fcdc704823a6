#!/usr/bin/python3
"""`make demo`: the gateway and the chat backend, side by side.

Writes DIR/rainbow.ini once (random security_token and token_secret, the
gateway on 127.0.0.1:PORT, hooks to the chat backend on 127.0.0.1:WEB, its
SQLite file in DIR/data) and keeps it, so device sessions survive a restart
of the demo; starts both processes, prints the chat page's address, and
stops both on Ctrl-C (or when either exits).

    demo.py --bin build/rainbow-server [--dir build/demo] [--port 1984] [--web 8000]
    demo.py --write-conf DIR ...   only write the configuration (for tests)

Restart the gateway alone to see that nothing is lost: `kill -TERM` the
pid it prints; the demo starts it again.
"""
import argparse
import os
import secrets
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def write_conf(d, port, web):
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "rainbow.ini")
    if os.path.exists(path):
        return path
    with open(path, "w") as f:
        f.write("""; written by clients/demo/demo.py for the chat demo
[main]
port = {port}
bind = 127.0.0.1
data_dir = {data}
security_token = {token}
token_secret = {secret}
connect_url =
forward_url = http://127.0.0.1:{web}/rainbow/msg/
close_url = http://127.0.0.1:{web}/rainbow/close
log_level = info
""".format(port=port, web=web, data=os.path.join(os.path.abspath(d), "data"),
           token=secrets.token_hex(16), secret=secrets.token_hex(32)))
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="build/rainbow-server")
    ap.add_argument("--dir", default="build/demo")
    ap.add_argument("--port", type=int, default=1984)
    ap.add_argument("--web", type=int, default=8000)
    ap.add_argument("--write-conf", action="store_true")
    args = ap.parse_args()
    conf = write_conf(args.dir, args.port, args.web)
    if args.write_conf:
        print(conf)
        return 0
    web = subprocess.Popen([sys.executable, os.path.join(HERE, "chat_backend.py"), "-f", conf,
                            "--port", str(args.web)])
    gw = None
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print("\n  Rainbow chat demo: open http://127.0.0.1:%d/ in two browser tabs\n" % args.web,
          flush=True)
    try:
        while not stopping and web.poll() is None:
            if gw is None or gw.poll() is not None:
                if gw is not None:
                    print("demo: gateway exited (%s); starting it again" % gw.returncode,
                          flush=True)
                gw = subprocess.Popen([args.bin, "-f", conf])
                print("demo: gateway pid %d (kill -TERM it to try a restart)" % gw.pid,
                      flush=True)
            time.sleep(0.2)
    finally:
        for p in (gw, web):
            if p and p.poll() is None:
                p.terminate()
        for p in (gw, web):
            if p:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
