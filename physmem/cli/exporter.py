"""``physmem exporter``: serve physmem's readings to Prometheus, or write them for
node_exporter's textfile collector.

Needs the prometheus-client library: pip install 'physmem[exporter]'.
"""
from __future__ import annotations

import argparse
import logging
import sys
import threading
from typing import TYPE_CHECKING

from ..errors import MissingDependency
from . import Command, Exit, stopped_by_signals
from ._options import check_directory, refused, seconds_arg
from ._output import Output

if TYPE_CHECKING:
    from ..exporter import Exporter

__all__ = ["DESCRIPTION", "EXAMPLE", "MISSING", "MISSING_HTTP", "arguments", "run", "EXPORTER"]

DESCRIPTION = ("Serve physmem's readings to Prometheus on /metrics, or write them for "
               "node_exporter's textfile collector. Needs the prometheus-client library: "
               "pip install 'physmem[exporter]'.")

EXAMPLE = """examples:
  physmem exporter                                  # http://127.0.0.1:9877/metrics
  physmem exporter --listen :9877 --interval 30     # every address; scans every 30 s
  physmem exporter --textfile /var/lib/prometheus/node-exporter
  physmem exporter --textfile DIR --once            # one file and exit (for cron)
  physmem exporter --once                           # one scrape on stdout and exit
  physmem exporter --json                           # one scrape as JSON and exit
  physmem exporter --nfd /etc/kubernetes/node-feature-discovery/features.d
Cheap readings are taken at each scrape; whole-machine scans run in the background every
--interval seconds and are served from their last result (physmem_reading_age_seconds;
physmem_reading_pending is 1 until a reading's first run has finished). --once and --json
wait for every reading. DIR should be writable by root only (not /tmp).
"""

MISSING = ("physmem exporter needs the prometheus-client library, which is not installed: "
           "pip install 'physmem[exporter]'")
MISSING_HTTP = ("physmem exporter's HTTP server needs the waitress library, which is not "
                "installed: pip install 'physmem[exporter]' (or use --textfile DIR)")


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", default="127.0.0.1:9877", metavar="HOST:PORT",
                   help="address to serve /metrics on (default 127.0.0.1:9877; port 0: any free port)")
    p.add_argument("--interval", type=seconds_arg, default=60.0, metavar="S",
                   help="seconds between background scans, and between --textfile rewrites (default 60)")
    p.add_argument("--textfile", metavar="DIR",
                   help="write DIR/physmem.prom (atomically) instead of serving HTTP")
    p.add_argument("--nfd", metavar="DIR",
                   help="also write Node Feature Discovery's feature file DIR/physmem after every "
                        "forecast (see physmem nfd)")
    p.add_argument("--once", action="store_true",
                   help="take every reading once, write the --textfile (or print the scrape) "
                        "and exit")


def run(args: argparse.Namespace, out: Output) -> Exit:
    if out.json and args.textfile:
        args.parser.error("--json prints to stdout: leave out --textfile")
    if args.textfile:
        check_directory(args.textfile, "--textfile")
    if args.nfd:
        check_directory(args.nfd, "--nfd")
    try:
        from ..exporter import Exporter, parse_listen
    except ImportError as exc:
        if "prometheus" not in str(exc):
            raise
        raise MissingDependency(MISSING) from None
    if not args.textfile and not args.once and not out.json:
        try:
            import waitress  # noqa: F401
        except ImportError:
            raise MissingDependency(MISSING_HTTP) from None
    host, port = (None, 0) if args.textfile else parse_listen(args.listen)
    # A failing background reading is logged (once per failure) besides its error metric.
    logging.basicConfig(format="physmem exporter: %(message)s", level=logging.WARNING)
    exporter = Exporter(interval=args.interval, sys_root=args.sys_root, proc_root=args.proc_root,
                        nfd_dir=args.nfd)
    if out.json:
        exporter.refresh()
        out.emit_json(exporter.as_json())
        return Exit.OK
    if args.once:
        exporter.refresh()
        if not args.textfile:
            sys.stdout.buffer.write(exporter.exposition())
            return Exit.OK
        try:
            print(exporter.write_textfile(args.textfile))
        except OSError as exc:
            raise refused(f"cannot write into --textfile {args.textfile}", exc) from None
        return Exit.OK

    with stopped_by_signals() as stop:
        return _serve(args, exporter, stop, host, port)


def _serve(args: argparse.Namespace, exporter: Exporter, stop: threading.Event,
           host: str | None, port: int) -> Exit:
    """Run until ``stop``: the textfile written every --interval, or the HTTP server."""
    if args.textfile:
        # node_exporter may read the file at any moment: its first version already holds
        # the background readings rather than lacking them for a whole --interval.
        exporter.refresh()
    exporter.start()
    try:
        if args.textfile:
            try:   # the first write tells a setup mistake (no right to DIR) at once
                path = exporter.write_textfile(args.textfile)
            except OSError as exc:
                raise refused(f"cannot write into --textfile {args.textfile}", exc) from None
            print(f"physmem exporter: writing {path} every {args.interval:g} s", flush=True)
            while not stop.wait(args.interval):
                try:
                    exporter.write_textfile(args.textfile)
                except OSError as exc:   # a full disk, say: keep the old file, try again
                    logging.warning("cannot write %s: %s", path, exc)
            return Exit.OK
        from ..exporter import MetricsServer

        assert host is not None
        try:
            server = MetricsServer(exporter, host, port)
        except OSError as exc:
            raise refused(f"cannot listen on --listen {args.listen}", exc) from None
        server.start()
        try:
            shown = f"[{host}]" if ":" in host else host
            print(f"physmem exporter: serving http://{shown}:{server.port}/metrics", flush=True)
            while not stop.wait(1.0):
                pass
        finally:
            server.close()
        return Exit.OK
    finally:
        exporter.stop(timeout=5.0)


EXPORTER = Command(
    help="Prometheus metrics: serve /metrics or write a .prom file",
    description=DESCRIPTION, epilog=EXAMPLE, arguments=arguments, run=run,
    json="take every reading once, print the metrics as JSON and exit", roots=True)
