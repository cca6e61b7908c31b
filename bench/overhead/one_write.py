"""``--upstream nginx-one-write``: gwbench's nginx and canned events, each stream written in one piece.

gwbench's upstream flushes each of a stream's 21 SSE events on its own, which costs nginx ~0.16 ms of CPU per stream
(against ~0.04 ms for one write); the gateway reads such a stream in one piece all the same (1.01 reads per stream
at max load, 1.02 at 1,000 streams/s, counted in the relay). Where the upstream shares the gateway's cores
(bench/workers.py), those flushes take CPU the gateway would scale into without changing what the gateway does;
this upstream leaves them out. It is an nginx of its own (no daemon, a child of the benchmark, in the run's temp
folder), with gwbench's Lua module for its events and non-streamed answer.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULES = Path("/usr/lib/nginx/modules")

_CONF = """\
load_module {modules}/ndk_http_module.so;
load_module {modules}/ngx_http_lua_module.so;
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  server_tokens off;
  keepalive_timeout 120s;
  keepalive_requests 10000000;
  client_body_buffer_size 64k;
  client_body_temp_path {tmp}/body;
  default_type application/json;
  lua_package_path '{here}/?.lua;{gwbench}/upstream/?.lua;;';
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /v1/chat/completions {{ content_by_lua_block {{ require('one_write').chat() }} }}
    location = /health {{ return 200 '{{"status":"ok"}}'; }}
  }}
}}
"""


def missing(gwbench: Path | None) -> str | None:
    """Why this upstream cannot start here, or None."""
    if gwbench is None or not (gwbench / "upstream" / "fake_openai.lua").exists():
        return "it needs gwbench's upstream/fake_openai.lua (set GWBENCH_DIR)"
    if not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():
        return "nginx is not installed (gwbench's setup.sh installs it)"
    if not (MODULES / "ngx_http_lua_module.so").exists():
        return f"nginx's Lua module is not in {MODULES} (libnginx-mod-http-lua)"
    return None


def start(gwbench: Path, port: int, tmp: Path, pin: list[str]) -> subprocess.Popen[bytes]:
    """Start it (pinned with ``pin``, a taskset prefix) and return the nginx master process."""
    folder = tmp / "nginx-one-write"
    (folder / "body").mkdir(parents=True, exist_ok=True)
    conf = folder / "nginx.conf"
    conf.write_text(_CONF.format(modules=MODULES, tmp=folder, here=HERE, gwbench=gwbench, port=port))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    log = open(folder / "nginx.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [*pin, nginx, "-p", str(folder), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
