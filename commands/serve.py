"""``audiosim serve``: run the search service (REST API + web page) over one or more collections.

Needs the ``serve`` extra (``pip install 'audiosim[serve]'``). The command checks its options
(see :class:`audiosim.service.ServeConfig`), opens and warms every collection, then runs uvicorn.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from audiosim.commands.common import SECONDS, Number
from audiosim.errors import MissingDependencyError


@click.command("serve")
@click.option("--collection", "collections", multiple=True, required=True, metavar="[NAME=]DIR",
              help="A collection to serve, repeatable; served as NAME (default: the folder's name).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but a loopback address needs --token.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--token", default=None, envvar="AUDIOSIM_TOKEN", show_envvar=True,
              help="Require 'Authorization: Bearer TOKEN' on /api and /metrics.")
@click.option("--max-upload-mb", default=50.0, show_default=True, type=Number(min=0, min_open=True), help="Largest accepted upload (413 above).")
@click.option("--allow-write", is_flag=True,
              help="Enable POST /api/collections/NAME/index (folders under --root) and DELETE of items.")
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="With --allow-write: the only folder tree index jobs may read.")
@click.option("--cors", multiple=True, metavar="ORIGIN", help="Allow browser pages from ORIGIN to call the API (repeatable).")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="Inference threads (uploads).")
@click.option("--queue", default=16, show_default=True, type=click.IntRange(0, 10000),
              help="Uploads that may wait for a worker; more get 503 + Retry-After.")
@click.option("--queue-wait", "queue_wait_s", default=10.0, show_default=True, type=SECONDS,
              help="Seconds an upload may wait for a worker before it gets 503 (the latency bound).")
@click.option("--search-threads", default=1, show_default=True, type=click.IntRange(1, 256),
              help="OpenMP threads per FAISS search. 1 suits a server: concurrent requests already use the cores, "
                   "and several threads per small search mostly wait on each other.")
@click.option("--root-path", default="", help="URL prefix when served behind a reverse proxy under a sub-path, e.g. /audiosim.")
@click.option("--proxy-headers/--no-proxy-headers", default=False, show_default=True,
              help="Trust X-Forwarded-For/-Proto from --forwarded-allow-ips (behind a reverse proxy).")
@click.option("--forwarded-allow-ips", default="127.0.0.1", show_default=True, help="Proxies whose X-Forwarded-* headers are trusted.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info", show_default=True)
def serve_cmd(collections, host, port, token, max_upload_mb, allow_write, root, cors, workers, queue, queue_wait_s,
              search_threads, root_path, proxy_headers, forwarded_allow_ips, log_level):
    """Serve collections over HTTP: a REST API (OpenAPI at /docs) and a page at / to search and listen."""
    import importlib.util


    missing = [dist for dist, module in (("fastapi", "fastapi"), ("uvicorn", "uvicorn"),
                                         ("prometheus-client", "prometheus_client"), ("python-multipart", "multipart"))
               if importlib.util.find_spec(module) is None]
    if missing:
        raise MissingDependencyError(f"`audiosim serve` needs {', '.join(missing)}: pip install 'audiosim[serve]'")
    import uvicorn

    from audiosim.service import ServeConfig, create_app
    from audiosim.service.config import check_port

    config = ServeConfig.from_args(collections, host=host, port=port, token=token, max_upload_mb=max_upload_mb,
                                   allow_write=allow_write, root=root, cors=tuple(cors), workers=workers, queue=queue,
                                   queue_wait_s=queue_wait_s)
    check_port(host, port)  # a busy port is said now, naming --port: not after loading, in uvicorn's words
    log = logging.getLogger("audiosim")  # the service's own messages; uvicorn configures its loggers itself
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(log_level.upper())
    import faiss

    faiss.omp_set_num_threads(search_threads)  # this process only serves: a process-wide setting is right here
    click.echo(f"loading {len(config.collections)} collection(s) ...", err=True)
    app = create_app(config)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"audiosim serving {', '.join(n for n, _ in config.collections)} on http://{shown}:{port}{root_path}/ "
               f"(API docs at /docs{'; token required' if token else ''})", err=True)
    uvicorn.run(app, host=host, port=port, root_path=root_path, proxy_headers=proxy_headers,
                forwarded_allow_ips=forwarded_allow_ips, log_level=log_level, access_log=log_level == "debug")
