"""``nhance-batch serve``: the web interface (submit videos, follow jobs, compare, download)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from nhance_batch.cli.common import CONFIG_ERROR_EXIT


def _listen(host: str, port: int):
    """A listening socket on host:port (port 0: a free one), so the printed URL is exact."""
    import socket

    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@click.command("serve")
@click.option("--host", default="127.0.0.1", help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765,
              help="Port to listen on (0: any free one).")
@click.option("--data", "data", type=click.Path(file_okay=False, path_type=Path),
              default=Path("nhance-web"),
              help="Data folder: each job is a normal job folder DATA/jobs/<id>/ (input/, "
                   "output/), so `status` and `resume` work on it too.")
@click.option("--token", envvar="NHANCE_TOKEN", default=None,
              help="The access token (or NHANCE_TOKEN); without one a random token is made "
                   "and the URL holding it printed.")
@click.option("--address", envvar="RAY_ADDRESS", default=None,
              help="Ray cluster the jobs run on (or RAY_ADDRESS); none: an embedded local Ray.")
@click.option("--max-upload-bytes", type=click.IntRange(min=1), default=4 << 30,
              help="Largest upload accepted (all files of one job); larger gets 413.")
@click.option("--allow-input", "allow_input", multiple=True, metavar="PREFIX",
              help="Allow jobs over server-side inputs (folders, files, bucket URLs) under "
                   "PREFIX; repeatable. None: only uploads.")
@click.option("--executor", type=click.Choice(["ray", "sequential"]), default="ray",
              help="Run jobs on Ray, or in the server process one chunk at a time.")
@click.option("--workers", type=click.IntRange(min=0), default=0,
              help="Enhancer actors per job (0: one per GPU, or one on a CPU-only machine).")
def serve(host: str, port: int, data: Path, token: str | None, address: str | None,
          max_upload_bytes: int, allow_input: tuple[str, ...], executor: str,
          workers: int) -> None:
    """Serve the web interface: upload videos or name server-side inputs, follow each job
    live, compare before and after, and download the results. Jobs run one at a time, in the
    background; after a restart, queued and running jobs resume from their manifests.

    Every route needs the token: `Authorization: Bearer TOKEN`, or the cookie set by opening
    /?token=TOKEN. Binding a non-loopback host needs an explicit --token."""
    import uvicorn

    from nhance_batch.web.auth import new_token
    from nhance_batch.web.settings import ServerConfig, is_loopback

    generated = token is None or token == ""
    if generated and not is_loopback(host):
        click.echo(f"error: listening on {host} (not loopback) needs an explicit --token or "
                   "NHANCE_TOKEN", err=True)
        raise SystemExit(CONFIG_ERROR_EXIT)
    for prefix in allow_input:
        if "://" not in prefix and not Path(prefix).exists():
            click.echo(f"error: --allow-input {prefix}: no such file or folder", err=True)
            raise SystemExit(CONFIG_ERROR_EXIT)
    try:
        config = ServerConfig(data=data, token=new_token() if generated else token, host=host,
                              port=port, address=address, executor=executor,
                              max_upload_bytes=max_upload_bytes, allow_input=allow_input,
                              workers=workers)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    from nhance_batch.web.app import create_app

    try:
        sock = _listen(host, port)
    except OSError as exc:
        click.echo(f"error: cannot listen on {host}:{port}: {exc}", err=True)
        raise SystemExit(CONFIG_ERROR_EXIT) from exc
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}/"
    click.echo(f"nhance-batch serve: data in {config.data}")
    if generated:
        click.echo(f"open {url}?token={config.token}", err=False)
    else:
        click.echo(f"open {url}?token=<your token>  (or send Authorization: Bearer <token>)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3,
                                           access_log=False))
    server.run(sockets=[sock])
