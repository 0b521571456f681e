"""The Grafana dashboard of the mixin, built with Grafana's own foundation SDK.

Rows: verdicts (state and what raised it, score timelines per head - fused, voice,
face, lip sync - with the state
machine's thresholds drawn from `deepfake_state_threshold`, alert annotations), streams
(windows scored and dropped, media drops, source up, reconnects and stalls, frame rate)
and the scorer (window-to-score latency quantiles, batch size, inference time, queue,
backend, webhook, build). A `stream` variable filters every per-stream panel.
"""

from __future__ import annotations

import json
from typing import Any

from monitor.live.state import ALL_STATES, RAISED_BY
from monitor.mixin.rules import STATE_CODE, Selectors
from monitor.mixin.settings import MixinConfig

TITLE = "deepfake-monitor"
STREAM = 'stream=~"$stream"'
RATE = "$__rate_interval"
DATASOURCE = "${datasource}"
STATE_COLORS = {
    "STARTING": "text",
    "CLEAR": "green",
    "SUSPICIOUS": "orange",
    "ALERT": "red",
    "NO_FACE": "blue",
    "NO_AUDIO": "purple",
    "SILENCE": "purple",
    "DOWN": "dark-red",
    "ENDED": "text",
}
HEAD_TITLES = {
    "fused": "Fused score",
    "audio": "Voice score",
    "visual": "Face score",
    "sync": "Lip-sync score",
}
HEAD_MEANING = {
    "fused": "P(fake) of the fused head",
    "audio": "P(fake) of the voice head",
    "visual": "P(fake) of the face head",
    "sync": "P(voice and mouth out of step) of the lip-sync head (absent for models "
    "exported without it)",
}


def _sdk() -> Any:
    """The SDK's modules, imported when a dashboard is built (a dev/monitoring extra)."""
    try:
        from grafana_foundation_sdk.builders import (
            dashboard,
            prometheus,
            statetimeline,
            table,
            timeseries,
        )
        from grafana_foundation_sdk.cog.encoder import JSONEncoder
        from grafana_foundation_sdk.models import common
        from grafana_foundation_sdk.models import dashboard as models
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        from monitor.errors import ConfigError

        raise ConfigError(
            f"building the dashboard needs grafana-foundation-sdk ({exc}); "
            "pip install 'deepfake-monitor[dev]'"
        ) from exc
    return type(
        "Sdk",
        (),
        {
            "dashboard": dashboard,
            "prometheus": prometheus,
            "statetimeline": statetimeline,
            "table": table,
            "timeseries": timeseries,
            "encoder": JSONEncoder,
            "common": common,
            "models": models,
        },
    )


class _Builder:
    def __init__(self, cfg: MixinConfig) -> None:
        self.cfg = cfg
        self.sdk = _sdk()
        self.m = Selectors(cfg)
        self.ds = self.sdk.models.DataSourceRef(type_val="prometheus", uid=DATASOURCE)

    def query(self, expr: str, legend: str, ref: str = "A", instant: bool = False) -> Any:
        q = self.sdk.prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref)
        q = q.datasource(self.ds)
        return q.instant() if instant else q.range()

    def series(self, title: str, unit: str, targets: list[tuple[str, str]], **opts: Any) -> Any:
        panel = (
            self.sdk.timeseries.Panel()
            .title(title)
            .datasource(self.ds)
            .unit(unit)
            .span(opts.get("span", 8))
            .height(opts.get("height", 7))
            .line_width(1)
            .fill_opacity(opts.get("fill", 10))
        )
        for ref, (expr, legend) in zip("ABCDEFGH", targets, strict=False):
            panel = panel.with_target(self.query(expr, legend, ref))
        if "min" in opts:
            panel = panel.min(opts["min"])
        if "max" in opts:
            panel = panel.max(opts["max"])
        if "description" in opts:
            panel = panel.description(opts["description"])
        return panel

    def mapped_timeline(
        self, title: str, expr: str, names: list[str], colors: dict[str, str]
    ) -> Any:
        m = self.sdk.models
        mapping = m.ValueMap(
            options={
                str(i): m.ValueMappingResult(text=n, color=colors.get(n, "text"), index=i)
                for i, n in enumerate(names)
            }
        )
        return (
            self.sdk.statetimeline.Panel()
            .title(title)
            .datasource(self.ds)
            .span(24)
            .height(6)
            .show_value(self.sdk.common.VisibilityMode.NEVER)
            .mappings([mapping])
            .with_target(self.query(expr, "{{stream}}"))
        )

    def score(self, head: str) -> Any:
        m = self.m
        score = m("deepfake_score", f'{STREAM},head="{head}"')
        alert_on = m("deepfake_state_threshold", f'head="{head}",threshold="alert_on"')
        suspicious_on = m("deepfake_state_threshold", f'head="{head}",threshold="suspicious_on"')
        panel = self.series(
            HEAD_TITLES[head],
            "percentunit",
            [
                (score, "{{stream}}"),
                (f"max({alert_on})", "alert_on"),
                (f"max({suspicious_on})", "suspicious_on"),
            ],
            min=0,
            max=1,
            fill=0,
            span=12,
            description=f"Smoothed {HEAD_MEANING[head]}; dashed: the state machine's "
            "thresholds to enter SUSPICIOUS and ALERT.",
        )
        m_ = self.sdk.models
        dashed = m_.DynamicConfigValue(
            id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}
        )
        for name, color in (("alert_on", "red"), ("suspicious_on", "orange")):
            panel = panel.override_by_name(
                name,
                [
                    dashed,
                    m_.DynamicConfigValue(
                        id_val="color", value={"mode": "fixed", "fixedColor": color}
                    ),
                ],
            )
        return panel


def _verdict_panels(b: _Builder) -> list[Any]:
    m = b.m
    terms = []
    for i, mod in enumerate(RAISED_BY):
        sel = m("deepfake_verdict_modality", f'{STREAM},modality="{mod}"')
        terms.append(f"  {sel} * {i + 1}")
    joined = " or\n".join(terms)
    raised = f"sum by (stream) (\n{joined}\n)"
    return [
        b.mapped_timeline(
            "Stream state",
            f"{STATE_CODE}{{{','.join(p for p in (b.cfg.selector, STREAM) if p)}}}",
            list(ALL_STATES),
            STATE_COLORS,
        ),
        b.mapped_timeline(
            "Verdict raised by",
            raised,
            ["–", *RAISED_BY],
            {"voice": "purple", "face": "blue", "voice_face": "red", "lip_sync": "orange"},
        ),
        *(b.score(h) for h in HEAD_TITLES),
    ]


def _stream_panels(b: _Builder) -> list[Any]:
    m = b.m
    return [
        b.series(
            "Windows scored / s",
            "wps",
            [(f"deepfake:windows_scored:rate1m{{{_join(b.cfg.selector, STREAM)}}}", "{{stream}}")],
        ),
        b.series(
            "Windows dropped / s",
            "wps",
            [
                (
                    f"sum by (stream, stage) (rate({m('deepfake_windows_dropped_total', STREAM)}"
                    f"[{RATE}]))",
                    "{{stream}} {{stage}}",
                )
            ],
        ),
        b.series(
            "Media dropped",
            "short",
            [
                (
                    f"sum by (stream) (rate({m('deepfake_video_frames_dropped_total', STREAM)}"
                    f"[{RATE}]))",
                    "{{stream}} frames/s",
                ),
                (
                    f"sum by (stream) (rate({m('deepfake_audio_dropped_seconds_total', STREAM)}"
                    f"[{RATE}]))",
                    "{{stream}} audio s/s",
                ),
            ],
        ),
        b.series(
            "Source up",
            "bool",
            [(m("deepfake_source_up", STREAM), "{{stream}}")],
            min=0,
            max=1,
        ),
        b.series(
            "Reconnects and stalls",
            "short",
            [
                (
                    f"sum by (stream) (increase({m('deepfake_source_reconnects_total', STREAM)}"
                    f"[{RATE}]))",
                    "{{stream}} reconnects",
                ),
                (
                    f"sum by (stream) (increase({m('deepfake_source_stalls_total', STREAM)}"
                    f"[{RATE}]))",
                    "{{stream}} stalls",
                ),
            ],
        ),
        b.series("Video frames / s", "fps", [(m("deepfake_video_fps", STREAM), "{{stream}}")]),
    ]


def _quantiles(b: _Builder, metric: str, qs: tuple[float, ...]) -> list[tuple[str, str]]:
    sel = b.m(f"{metric}_bucket")
    return [
        (
            f"histogram_quantile({q:g}, sum by (le) (rate({sel}[{RATE}])))",
            f"p{round(q * 100)}",
        )
        for q in qs
    ]


def _scorer_panels(b: _Builder) -> list[Any]:
    m = b.m
    build = (
        b.sdk.table.Panel()
        .title("Build and model")
        .datasource(b.ds)
        .span(24)
        .height(4)
        .with_target(
            b.query(m("deepfake_build_info"), "{{instance}}", instant=True).format(
                b.sdk.prometheus.PromQueryFormat.TABLE
            )
            if hasattr(b.sdk.prometheus, "PromQueryFormat")
            else b.query(m("deepfake_build_info"), "{{instance}}", instant=True)
        )
    )
    return [
        b.series(
            "Window-to-score latency",
            "s",
            _quantiles(b, "deepfake_window_latency_seconds", (0.5, 0.9, 0.99)),
        ),
        b.series(
            "Batch size",
            "short",
            [
                *_quantiles(b, "deepfake_batch_size", (0.5, 0.99)),
                (
                    f"sum(rate({m('deepfake_batch_size_sum')}[{RATE}])) / "
                    f"sum(rate({m('deepfake_batch_size_count')}[{RATE}]))",
                    "mean",
                ),
            ],
        ),
        b.series(
            "Inference time per batch",
            "s",
            _quantiles(b, "deepfake_inference_seconds", (0.5, 0.99)),
        ),
        b.series(
            "Scorer queue and streams",
            "short",
            [
                (f"sum({m('deepfake_scorer_queue')})", "windows waiting"),
                (f"sum({m('deepfake_streams')})", "streams"),
            ],
        ),
        b.series(
            "Backend ready and failed batches",
            "short",
            [
                (m("deepfake_backend_ready"), "{{instance}} ready"),
                (
                    f"sum by (instance) (increase({m('deepfake_scorer_errors_total')}[{RATE}]))",
                    "{{instance}} failed batches",
                ),
            ],
            min=0,
        ),
        b.series(
            "Webhook deliveries",
            "short",
            [
                (
                    f"sum by (outcome) (increase({m('deepfake_webhook_events_total')}[{RATE}]))",
                    "{{outcome}}",
                )
            ],
        ),
        build,
    ]


def _join(*parts: str) -> str:
    return ",".join(p for p in parts if p)


def build_dashboard(cfg: MixinConfig) -> dict[str, Any]:
    """The dashboard as Grafana JSON (a dict)."""
    b = _Builder(cfg)
    sdk, m = b.sdk, b.m
    d = (
        sdk.dashboard.Dashboard(TITLE)
        .uid(cfg.dashboard_uid)
        .tags(["deepfake-monitor"])
        .refresh("10s")
        .time("now-30m", "now")
        .timezone("browser")
        .with_variable(
            sdk.dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .with_variable(
            sdk.dashboard.QueryVariable("stream")
            .label("Stream")
            .datasource(b.ds)
            .query(f"label_values({m('deepfake_stream_state')}, stream)")
            .refresh(sdk.models.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .annotation(
            sdk.dashboard.AnnotationQuery()
            .name("Deepfake alerts")
            .datasource(b.ds)
            .enable(True)
            .icon_color("red")
            .expr(
                'ALERTS{alertname=~"DeepfakeDetected|DeepfakeSuspicious",'
                f'alertstate="firing",{STREAM}}}'
            )
        )
    )
    for title, panels in (
        ("Verdicts", _verdict_panels(b)),
        ("Streams", _stream_panels(b)),
        ("Scorer", _scorer_panels(b)),
    ):
        d = d.with_row(sdk.dashboard.Row(title))
        for panel in panels:
            d = d.with_panel(panel)
    encoded = json.loads(sdk.encoder(sort_keys=True, indent=2).encode(d.build()))
    return dict(encoded)


def render_dashboard(cfg: MixinConfig) -> str:
    return json.dumps(build_dashboard(cfg), indent=2, sort_keys=True) + "\n"


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every query in the dashboard, annotations and variables too."""
    out = []
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []) or []:
            if target.get("expr"):
                out.append((panel.get("title", ""), target["expr"]))
    for ann in dashboard.get("annotations", {}).get("list", []):
        if ann.get("expr"):
            out.append((f"annotation {ann.get('name')}", ann["expr"]))
    return out
