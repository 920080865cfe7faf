"""Generate Helios' Grafana dashboards with Grafana's foundation SDK.

Run ``python grafana/generate.py`` after changing a panel: it rewrites ``grafana/dashboards/*.json``.
``python grafana/generate.py --check`` exits 1 when the committed JSON differs from what this file
generates (tests/integration/test_dashboards.py asserts the same).

Every query names only metrics in :data:`EXPORTED_METRICS`, the worker's metric contract; the
tests parse each query with promtool and compare the names it uses with that set.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, dashboard
from grafana_foundation_sdk.models import prometheus as prometheus_models

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"

#: Forecast horizons the worker publishes (``horizon`` label); kept equal to models.features.HORIZONS.
HORIZONS: tuple[str, ...] = ("5m", "15m", "30m", "60m")

#: Every series name the worker exports on /metrics (histograms with their _bucket/_sum/_count),
#: plus Prometheus' own ``up``.
EXPORTED_METRICS: frozenset[str] = frozenset(
    {
        "helios_predicted_cpu",
        "helios_predicted_memory",
        "helios_predicted_cpu_lower",
        "helios_predicted_cpu_upper",
        "helios_predicted_memory_lower",
        "helios_predicted_memory_upper",
        "helios_observed_cpu",
        "helios_observed_memory",
        "helios_observed_feature",
        "helios_anomaly_score",
        "helios_anomaly_detected",
        "helios_anomaly_severity",
        "helios_anomaly_threshold",
        "helios_anomaly_contribution",
        "helios_recommended_replicas",
        "helios_current_replicas",
        "helios_recommendations_total",
        "helios_prediction_age_seconds",
        "helios_forecast_abs_error",
        "helios_forecast_coverage",
        "helios_forecast_interval_level",
        "helios_inference_duration_seconds_bucket",
        "helios_inference_duration_seconds_sum",
        "helios_inference_duration_seconds_count",
        "helios_samples_total",
        "helios_dead_letters_total",
        "helios_tracked_deployments",
        "helios_model_reload_failures_total",
        "helios_model_info",
        "helios_ready",
        "up",
    }
)

#: Panels point at the dashboard's data-source variable, so the same JSON works against the
#: compose Prometheus (uid "prometheus") and a managed one.
DS = dashboard.DataSourceRef(type_val="prometheus", uid="${datasource}")

#: The selected deployment, as every per-deployment query filters it.
SEL = 'namespace="$namespace", deployment="$deployment"'

#: Scale thresholds drawn on panels; the worker's defaults (HELIOS_CPU_SCALE_UP/DOWN, HELIOS_MEMORY_WARNING).
CPU_SCALE_UP = 0.80
CPU_SCALE_DOWN = 0.20
MEMORY_WARNING = 0.85


def q(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False) -> prometheus.Dataquery:
    """One PromQL target."""
    target = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DS)
    if legend:
        target = target.legend_format(legend)
    return target.instant() if instant else target.range()


def targets(*specs: tuple[str, str]) -> list[prometheus.Dataquery]:
    """Range targets from (expr, legend) pairs, with refIds A, B, C ..."""
    return [q(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(specs)]


def legend() -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def tooltip() -> common_builders.VizTooltipOptions:
    return (
        common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.NONE)
    )


def reduce_last() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def line_thresholds(*steps: tuple[float | None, str]) -> dashboard_builders.ThresholdsConfig:
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(dashboard.ThresholdsMode.ABSOLUTE)
        .steps([dashboard.Threshold(value=value, color=color) for value, color in steps])
    )


def graph(
    title: str, description: str, specs: Iterable[tuple[str, str]], unit: str = "short"
) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .targets(targets(*specs))
        .unit(unit)
        .legend(legend())
        .tooltip(tooltip())
        .line_width(1)
        .fill_opacity(0)
        .height(8)
        .span(12)
    )


def big_number(title: str, description: str, expr: str, unit: str = "short") -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .with_target(q(expr, instant=True))
        .unit(unit)
        .reduce_options(reduce_last())
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.VALUE)
        .height(4)
        .span(4)
    )


def listing(title: str, description: str, expr: str) -> table.Panel:
    """An instant query shown as a table, one row per series (the Time column hidden)."""
    hide_time = dashboard.DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True}})
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .with_target(q(expr, instant=True).format(prometheus_models.PromQueryFormat.TABLE))
        .with_transformation(hide_time)
        .show_header(True)
        .height(8)
        .span(24)
    )


def band_panel(kind: str, horizon: str) -> timeseries.Panel:
    """Observed value against the latest forecast ``horizon`` ahead and its band (filled between)."""
    threshold = CPU_SCALE_UP if kind == "cpu" else MEMORY_WARNING
    panel = graph(
        f"{kind.upper() if kind == 'cpu' else 'Memory'} - forecast {horizon} ahead vs observed",
        f"Observed {kind} utilisation of $namespace/$deployment with the worker's latest forecast "
        f"for {horizon} ahead and its prediction band. The live error and coverage of this band are on "
        "the quality panels below.",
        [
            (f"helios_observed_{kind}{{{SEL}}}", "observed"),
            (f'helios_predicted_{kind}{{{SEL}, horizon="{horizon}"}}', f"predicted +{horizon}"),
            (f'helios_predicted_{kind}_lower{{{SEL}, horizon="{horizon}"}}', "lower"),
            (f'helios_predicted_{kind}_upper{{{SEL}, horizon="{horizon}"}}', "upper"),
        ],
        unit="percentunit",
    )
    band_style = [
        dashboard.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [4, 4]})
    ]
    return (
        panel.min(0)
        .thresholds(line_thresholds((None, "green"), (threshold, "red")))
        .thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.LINE)
        )
        .override_by_name(
            "upper",
            [
                *band_style,
                # Shade between the band's edges.
                dashboard.DynamicConfigValue(id_val="custom.fillBelowTo", value="lower"),
                dashboard.DynamicConfigValue(id_val="custom.fillOpacity", value=20),
            ],
        )
        .override_by_name("lower", band_style)
    )


def base(uid: str, title: str, description: str) -> dashboard_builders.Dashboard:
    namespace = (
        dashboard_builders.QueryVariable("namespace")
        .label("Namespace")
        .datasource(DS)
        .query("label_values(helios_recommended_replicas, namespace)")
        .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard.VariableSort.ALPHABETICAL_ASC)
    )
    deployment = (
        dashboard_builders.QueryVariable("deployment")
        .label("Deployment")
        .datasource(DS)
        .query('label_values(helios_recommended_replicas{namespace="$namespace"}, deployment)')
        .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard.VariableSort.ALPHABETICAL_ASC)
    )
    return (
        dashboard_builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["helios"])
        .editable()
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("browser")
        .with_variable(
            dashboard_builders.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .with_variable(namespace)
        .with_variable(deployment)
        .link(
            dashboard_builders.DashboardLink("Helios")
            .type(dashboard.DashboardLinkType.DASHBOARDS)
            .tags(["helios"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )


def overview() -> dashboard_builders.Dashboard:
    d = base(
        "helios-overview", "Helios / Overview", "Health of the Helios worker and the selected deployment."
    )
    d = d.with_row(dashboard_builders.Row("Service"))
    for panel in (
        big_number("Workers up", "Helios targets Prometheus scrapes successfully.", 'sum(up{job="helios"})'),
        big_number(
            "Workers ready",
            "Workers whose /ready is true (models loaded, partitions held).",
            "sum(helios_ready)",
        ),
        big_number(
            "Tracked deployments",
            "Deployments with live state on some worker.",
            "sum(helios_tracked_deployments)",
        ),
        big_number(
            "Anomalies now", "Deployments currently flagged as anomalous.", "sum(helios_anomaly_detected)"
        ),
        big_number(
            "Recommended replicas",
            "What KEDA reads for $namespace/$deployment (the ScaledObject's query).",
            f"max(helios_recommended_replicas{{{SEL}}})",
        ),
        big_number(
            "Prediction age",
            "Seconds since the newest prediction for $namespace/$deployment.",
            f"max(helios_prediction_age_seconds{{{SEL}}})",
            unit="s",
        ),
    ):
        d = d.with_panel(panel)
    d = d.with_row(dashboard_builders.Row("$namespace/$deployment"))
    d = d.with_panel(
        graph(
            "CPU - observed vs forecast 30m ahead",
            "Observed CPU utilisation and the latest forecast 30 minutes ahead.",
            [
                (f"helios_observed_cpu{{{SEL}}}", "observed"),
                (f'helios_predicted_cpu{{{SEL}, horizon="30m"}}', "predicted +30m"),
            ],
            unit="percentunit",
        )
    )
    d = d.with_panel(
        graph(
            "Anomaly score vs threshold",
            "Anomaly score in sigma against HELIOS_ANOMALY_THRESHOLD.",
            [
                (f"helios_anomaly_score{{{SEL}}}", "score"),
                ("max(helios_anomaly_threshold)", "threshold"),
            ],
        )
    )
    d = d.with_panel(
        graph(
            "Replicas - recommended vs current",
            "Helios' recommended replica count against the deployment's current replicas.",
            [
                (f"helios_recommended_replicas{{{SEL}}}", "recommended"),
                (f"helios_current_replicas{{{SEL}}}", "current"),
            ],
        )
    )
    d = d.with_panel(
        graph(
            "Prediction age",
            "Seconds since the newest prediction; the worker drops the series after HELIOS_STALE_AFTER.",
            [(f"helios_prediction_age_seconds{{{SEL}}}", "age")],
            unit="s",
        )
    )
    d = d.with_row(dashboard_builders.Row("Stream"))
    d = d.with_panel(
        graph(
            "Samples by outcome",
            "Samples per second the workers processed or sent to the dead-letter topic.",
            [("sum by (outcome) (rate(helios_samples_total[$__rate_interval]))", "{{outcome}}")],
            unit="reqps",
        )
    )
    d = d.with_panel(
        graph(
            "Dead letters by reason",
            "Samples per second sent to helios.dlq, by reason.",
            [("sum by (reason) (rate(helios_dead_letters_total[$__rate_interval]))", "{{reason}}")],
            unit="reqps",
        )
    )
    d = d.with_panel(
        graph(
            "Inference latency p50 / p99",
            "Time per scoring step (stream) and per request on the web view, by endpoint.",
            [
                (
                    "histogram_quantile(0.5, sum by (le, endpoint) "
                    "(rate(helios_inference_duration_seconds_bucket[$__rate_interval])))",
                    "p50 {{endpoint}}",
                ),
                (
                    "histogram_quantile(0.99, sum by (le, endpoint) "
                    "(rate(helios_inference_duration_seconds_bucket[$__rate_interval])))",
                    "p99 {{endpoint}}",
                ),
            ],
            unit="s",
        )
    )
    d = d.with_panel(
        graph(
            "Model reload failures",
            "Failed model reloads per model and interval.",
            [
                (
                    "sum by (model) (increase(helios_model_reload_failures_total[$__rate_interval]))",
                    "{{model}}",
                )
            ],
        )
    )
    d = d.with_panel(
        listing(
            "Loaded models",
            "Model name and version each worker serves (helios_model_info).",
            "max by (instance, name, version) (helios_model_info)",
        )
    )
    return d


def predictions() -> dashboard_builders.Dashboard:
    d = base(
        "helios-predictions",
        "Helios / Predictions",
        "Forecasts against actuals for each horizon, with the prediction band and its live quality.",
    )
    for horizon in HORIZONS:
        d = d.with_row(dashboard_builders.Row(f"Horizon {horizon}"))
        d = d.with_panel(band_panel("cpu", horizon)).with_panel(band_panel("memory", horizon))
    d = d.with_row(dashboard_builders.Row("Forecast quality"))
    d = d.with_panel(
        graph(
            "Band coverage vs nominal",
            "Rolling share of observed values inside the band, per feature and horizon, "
            "against the nominal level.",
            [
                (f"helios_forecast_coverage{{{SEL}}}", "{{feature}} {{horizon}}"),
                ("max(helios_forecast_interval_level)", "nominal"),
            ],
            unit="percentunit",
        )
        .min(0)
        .max(1)
    )
    d = d.with_panel(
        graph(
            "Mean absolute error",
            "Rolling mean absolute error of the utilisation forecasts, per feature and horizon.",
            [
                (
                    f'helios_forecast_abs_error{{{SEL}, feature=~"cpu_utilization|memory_utilization"}}',
                    "{{feature}} {{horizon}}",
                )
            ],
            unit="percentunit",
        )
    )
    return d


def anomalies() -> dashboard_builders.Dashboard:
    d = base(
        "helios-anomalies",
        "Helios / Anomalies",
        "Anomaly score against the threshold, detections and the features behind them.",
    )
    d = d.with_panel(
        graph(
            "Anomaly score vs thresholds",
            "Score in sigma; warning at the threshold, critical at 1.6 x the threshold.",
            [
                (f"helios_anomaly_score{{{SEL}}}", "score"),
                ("max(helios_anomaly_threshold)", "warning threshold"),
                ("1.6 * max(helios_anomaly_threshold)", "critical threshold"),
            ],
        ).span(16)
    )
    d = d.with_panel(
        big_number(
            "Anomaly detected",
            "1 while the worker flags $namespace/$deployment as anomalous.",
            f"max(helios_anomaly_detected{{{SEL}}})",
        )
        .span(8)
        .height(8)
        .thresholds(line_thresholds((None, "green"), (1, "red")))
        .color_mode(common.BigValueColorMode.BACKGROUND)
    )
    d = d.with_panel(
        graph(
            "Detections",
            "The worker's anomaly flag over time.",
            [(f"helios_anomaly_detected{{{SEL}}}", "detected")],
        )
        .span(24)
        .height(5)
    )
    d = d.with_panel(
        graph(
            "Feature contributions",
            "Share of the anomaly score each feature explains.",
            [(f"helios_anomaly_contribution{{{SEL}}}", "{{feature}}")],
        )
        .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
        .fill_opacity(40)
    )
    d = d.with_panel(
        bargauge.Panel()
        .title("Contributions now")
        .description("Latest contribution of each feature to the anomaly score.")
        .datasource(DS)
        .with_target(q(f"helios_anomaly_contribution{{{SEL}}}", "{{feature}}", instant=True))
        .reduce_options(reduce_last())
        .orientation(common.VizOrientation.HORIZONTAL)
        .min(0)
        .height(8)
        .span(12)
    )
    d = d.with_panel(
        graph(
            "Observed utilisation features",
            "Inputs of the detector that are fractions of a limit.",
            [
                (
                    f"helios_observed_feature{{{SEL}, "
                    'feature=~"cpu_utilization|memory_utilization|db_cpu|db_memory"}',
                    "{{feature}}",
                )
            ],
            unit="percentunit",
        )
    )
    d = d.with_panel(
        graph(
            "Observed memory and connections",
            "Memory in use per pod and PostgreSQL backends.",
            [
                (f'helios_observed_feature{{{SEL}, feature="memory_bytes"}}', "memory_bytes"),
                (f'helios_observed_feature{{{SEL}, feature="db_connections"}}', "db_connections"),
            ],
        ).override_by_name(
            "memory_bytes",
            [
                dashboard.DynamicConfigValue(id_val="unit", value="bytes"),
                dashboard.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
            ],
        )
    )
    d = d.with_panel(
        listing(
            "Most anomalous deployments",
            "The ten highest anomaly scores across every tracked deployment.",
            "topk(10, helios_anomaly_score)",
        )
    )
    return d


def recommendations() -> dashboard_builders.Dashboard:
    d = base(
        "helios-recommendations",
        "Helios / Recommendations",
        "Recommended against actual replicas, the actions behind them and the CPU forecast they act on.",
    )
    for panel in (
        big_number(
            "Recommended (KEDA query)",
            "max(helios_recommended_replicas{...}): the value KEDA divides by threshold 1.",
            f"max(helios_recommended_replicas{{{SEL}}})",
        ),
        big_number("Current", "Replicas the deployment runs now.", f"max(helios_current_replicas{{{SEL}}})"),
        big_number(
            "Gap",
            "Recommended minus current replicas (positive: scale up).",
            f"max(helios_recommended_replicas{{{SEL}}}) - max(helios_current_replicas{{{SEL}}})",
        ),
    ):
        d = d.with_panel(panel)
    d = d.with_panel(
        graph(
            "Replicas - recommended vs current",
            "Helios' recommendation against the replicas the deployment actually runs.",
            [
                (f"helios_recommended_replicas{{{SEL}}}", "recommended"),
                (f"helios_current_replicas{{{SEL}}}", "current"),
            ],
        ).span(24)
    )
    d = d.with_panel(
        graph(
            "Actions",
            "Recommendations emitted per interval, by action.",
            [
                (
                    f"sum by (action) (increase(helios_recommendations_total{{{SEL}}}[$__rate_interval]))",
                    "{{action}}",
                )
            ],
        )
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(60)
        .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    )
    d = d.with_panel(
        graph(
            "CPU forecast vs scale thresholds",
            "Forecast CPU utilisation per horizon against the scale-up and scale-down thresholds.",
            [
                (f"helios_predicted_cpu{{{SEL}}}", "+{{horizon}}"),
                (f"helios_observed_cpu{{{SEL}}}", "observed"),
            ],
            unit="percentunit",
        )
        .min(0)
        .thresholds(line_thresholds((None, "blue"), (CPU_SCALE_DOWN, "green"), (CPU_SCALE_UP, "red")))
        .thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.LINE)
        )
    )
    d = d.with_panel(
        listing(
            "All deployments",
            "Recommended minus current replicas for every tracked deployment.",
            "helios_recommended_replicas - on (namespace, deployment) group_left () helios_current_replicas",
        )
    )
    return d


_PROMQL_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords and label names left out).

    >>> sorted(metric_names('sum by (le) (rate(a_bucket{x="y{z}"}[5m])) / on () group_left () b > 1.6'))
    ['a_bucket', 'b']
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values may hold anything
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery selectors
    text = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)\s*(\()?", text):
        if match.group(2) is None and match.group(1).lower() not in _PROMQL_KEYWORDS | {"inf", "nan"}:
            names.add(match.group(1))
    return names


def panel_queries(model: dict[str, object]) -> list[tuple[str, str]]:
    """(panel title, expr) for every query target in a rendered dashboard, rows included."""
    found: list[tuple[str, str]] = []

    def walk(panels: object) -> None:
        for panel in panels if isinstance(panels, list) else []:
            for target in panel.get("targets") or []:
                if "expr" in target:
                    found.append((str(panel.get("title", "")), str(target["expr"])))
            walk(panel.get("panels"))

    walk(model.get("panels"))
    return found


DASHBOARDS: dict[str, Callable[[], dashboard_builders.Dashboard]] = {
    "helios-overview.json": overview,
    "helios-predictions.json": predictions,
    "helios-anomalies.json": anomalies,
    "helios-recommendations.json": recommendations,
}


def _number_panels(model: dict[str, object]) -> dict[str, object]:
    """Give every panel a stable id (the SDK leaves them unset)."""
    panels = model.get("panels")
    if isinstance(panels, list):
        for index, panel in enumerate(panels, start=1):
            panel["id"] = index
    return model


def render(name: str) -> str:
    """The JSON text of one dashboard, byte-for-byte what is committed."""
    model = json.loads(json.dumps(DASHBOARDS[name]().build(), cls=JSONEncoder))
    for title, expr in panel_queries(model):
        unknown = metric_names(expr) - EXPORTED_METRICS
        if unknown:
            raise ValueError(
                f"{name}: panel {title!r} queries {sorted(unknown)}, which Helios does not export"
            )
    return json.dumps(_number_panels(model), indent=2, sort_keys=True) + "\n"


def render_all() -> dict[str, str]:
    """File name -> JSON text for every dashboard."""
    return {name: render(name) for name in DASHBOARDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON is out of date")
    parser.add_argument(
        "--out", type=Path, default=DASHBOARD_DIR, help="folder to write (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    stale = []
    for name, text in render_all().items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"out of date, run python grafana/generate.py: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
