"""``helios``: the console script.

``helios worker`` runs the stream processor and its web view; ``helios ingest --source …`` feeds
``helios.metrics``; ``helios eval``, ``helios train`` and ``helios simulate`` are the offline
harnesses; ``helios schema`` prints the JSON schemas of the records on Kafka.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from pipeline.errors import ConfigError
from pipeline.logs import configure_logging
from pipeline.settings import load_settings

log = logging.getLogger("helios")

#: Subcommands implemented by modules exposing ``add_arguments(parser)`` and ``run(args) -> int``.
_DELEGATES: dict[str, tuple[str, str]] = {
    "ingest": ("pipeline.ingest", "Push samples from a source onto the metrics topic"),
    "train": ("pipeline.training", "Train the XGBoost anomaly model and write a versioned artifact"),
    "simulate": ("pipeline.simulate", "Replay a trace under a reactive HPA and under Helios, and compare"),
}
_EVALS: dict[str, tuple[str, str]] = {
    "nab": ("pipeline.evaluation.nab", "Run the anomaly detector over NAB data and score it"),
    "forecast": ("pipeline.evaluation.forecast_eval", "Stream a series through the forecaster and score it"),
    "kinds": ("pipeline.evaluation.kinds", "Write a labelled corpus of counts, latencies, temperatures, ..."),
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="helios", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    worker = sub.add_parser("worker", help="Run the Faust worker (agents, tables, web view on HELIOS_PORT)")
    worker.set_defaults(func=run_worker)
    for name, (module, help_text) in _DELEGATES.items():
        p = sub.add_parser(name, help=help_text)
        mod = _module(module)
        mod.add_arguments(p)
        p.set_defaults(func=mod.run)
    ev = sub.add_parser("eval", help="Evaluation harnesses").add_subparsers(
        dest="what", required=True, metavar="WHAT"
    )
    for name, (module, help_text) in _EVALS.items():
        p = ev.add_parser(name, help=help_text)
        mod = _module(module)
        mod.add_arguments(p)
        p.set_defaults(func=mod.run)
    schema = sub.add_parser("schema", help="Print the JSON schema of every record on Kafka")
    schema.set_defaults(func=print_schemas)
    return parser


def run_worker(args: argparse.Namespace) -> int:
    # The composition root: the one place in pipeline/ that imports agents/.
    from agents import wire
    from pipeline.app import HeliosWorker, create_app
    from pipeline.shutdown import StopDeadline

    settings = load_settings()
    configure_logging(settings)
    app = create_app(settings, wire=wire)
    log.info(
        "helios worker %s: broker %s, web http://%s:%d, interval %d s",
        settings.app_id,
        settings.kafka_bootstrap,
        settings.bind,
        settings.port,
        settings.scoring_interval,
    )
    deadline = StopDeadline(settings.shutdown_timeout)
    worker = HeliosWorker(
        app, deadline, loglevel=settings.log_level.lower(), quiet=True, redirect_stdouts=False
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    else:  # pragma: no cover - execute_from_commandline always raises SystemExit
        code = 0
    # Faust's consumer thread is not a daemon: one that did not finish closing would keep the process.
    deadline.leave(code)
    return code


def print_schemas(args: argparse.Namespace) -> int:
    from pipeline import records

    out = {
        model.__name__: model.model_json_schema()
        for model in (
            records.MetricSample,
            records.ForecastRecord,
            records.AnomalyRecord,
            records.RecommendationRecord,
            records.DeadLetter,
        )
    }
    print(json.dumps(out, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command != "worker":  # the worker configures logging through Faust's own set-up
            configure_logging(load_settings())
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"helios: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
