"""Drawing the monitor's frame: rich for the layout, plotext for the braille loss chart.

`frame()` returns a rich renderable that sizes itself to whatever space it is given, so
the live view follows terminal resizes and `plain_frame()` (--once) prints the same frame
as plain text. Everything here reads the `summarize()` dict; nothing touches the store.
"""

from __future__ import annotations

import io
import time
from typing import Any

import plotext
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.layout import Layout
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

STATUS_STYLE = {"running": "bold green", "finished": "bold cyan", "waiting": "bold yellow", "stale": "bold red",
                "stopped_by_guard": "bold red", "interrupted": "bold yellow", "failed": "bold red"}
CHART_REDRAW_S = 1.0  # new data redraws the chart at most this often (see LossChart)
MAX_CHART_POINTS_PER_COLUMN = 2  # braille cells hold 2 x-points; more would only cost time


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def number(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def downsample(points: list[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    """Bucket means, so a 100k-step run draws as fast as a 100-step one."""
    if len(points) <= limit:
        return points
    size = len(points) / limit
    out = []
    for i in range(limit):
        bucket = points[int(i * size):int((i + 1) * size)] or points[-1:]
        out.append((bucket[-1][0], sum(p[1] for p in bucket) / len(bucket)))
    return out


def step_ticks(last: int, count: int) -> list[int]:
    """Round step numbers for the x axis (1, 2, 5 x 10^k apart)."""
    raw = max(1, last) / count
    magnitude = 10 ** (len(str(int(raw))) - 1)
    spacing = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return list(range(0, int(last) + 1, int(spacing)))


class LossChart:
    """Train loss (braille line) and validation loss (x marks), drawn at the size rich offers."""

    def __init__(self, steps: list[tuple], evals: list[list], log_scale: bool):
        self.train = [(row[0], row[2]) for row in steps if row[2] is not None]
        self.evals = [(e[0], e[1]) for e in evals]
        self.log_scale = log_scale

    # The chart is the costly part of a frame (~5 ms of plotext). It is redrawn at once for a
    # new size or scale, and for new data at most every CHART_REDRAW_S: the counters in the
    # header still move on every refresh, and the monitor stays cheap on the training machine.
    _last: tuple = (None, None, 0.0, None)  # (layout key, data key, built at, Text)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width, height = options.max_width, options.height or 16
        if width < 24 or height < 6:
            yield Text("(terminal too small for the chart)")
            return
        if not self.train and not self.evals:
            yield Text("(no loss values yet)")
            return
        layout, data = (width, height, self.log_scale), (len(self.train), self.train[-1:], len(self.evals), self.evals[-1:])
        last_layout, last_data, built_at, text = LossChart._last
        now = time.monotonic()
        if layout != last_layout or (data != last_data and now - built_at >= CHART_REDRAW_S):
            LossChart._last = (layout, data, now, self._build(width, height))
        yield LossChart._last[3]

    def _build(self, width: int, height: int) -> Text:
        plotext.terminal.limit(False, False)  # size comes from rich's layout, not the tty
        fig = plotext.figure
        fig.clear()
        fig.theme("simple")
        fig.plot_size(width, height)
        train = downsample(self.train, width * MAX_CHART_POINTS_PER_COLUMN)
        if train:
            fig.draw(fig.signal([p[0] for p in train], [p[1] for p in train], marker="braille").lines())
        if self.evals:
            fig.draw(fig.signal([p[0] for p in self.evals], [p[1] for p in self.evals], marker="x"))
        last = max(p[0] for p in self.train + self.evals)
        ticks = step_ticks(last, max(2, width // 14))
        fig.ruler("x").ticks(ticks, [str(t) for t in ticks])
        if self.log_scale:
            fig.ruler("y").scale("log")
        return Text.from_ansi(fig.build().string(), no_wrap=True, overflow="crop")


def header(state: dict[str, Any], refresh: float | None) -> Panel:
    status = state["status"]
    label = Text(status.replace("_", " ").upper(), style=STATUS_STYLE.get(status, "bold"))
    if state.get("status_detail"):
        label.append(f"  {state['status_detail']}", style="")
    if status == "waiting":
        return Panel(label, title=f"monitor · {state['experiment']}", title_align="left")
    since = state.get("seconds_since_write")
    line1 = Text.assemble(label, f"   elapsed {duration(state.get('elapsed_s'))}",
                          f"   last write {number(since, '.1f')} s ago", overflow="ellipsis")
    total = state.get("total_steps")
    percent = f" ({100 * state['step'] / total:.0f}%)" if total else ""
    epochs_total = f"/{state['epochs_total']:.2f}" if state.get("epochs_total") else ""
    line2 = Text(f"step {state['step']}/{total or '?'}{percent}   epoch {number(state.get('epoch'), '.2f')}{epochs_total}"
                 f"   lr {number(state.get('lr'), '.2e')}   grad norm {number(state.get('grad_norm'), '.3f')}",
                 overflow="ellipsis", no_wrap=True)
    val = (f"val {state['val_loss']:.4f} (step {state['val_step']}; best {state['best_val_loss']:.4f} at {state['best_val_step']})"
           if state.get("val_loss") is not None else "val -")
    if "accuracy" in state:  # a classifier's run
        val += f"   acc {number(state['accuracy'], '.3f')} macro-F1 {number(state.get('macro_f1'), '.3f')}"
    line3 = Text(f"loss {number(state.get('train_loss'), '.4f')}   {val}   "
                 f"{number(state.get('tokens_per_s'), ',.0f')} tok/s (last {state.get('rolling_steps', 0)} steps)"
                 f"   ETA {duration(state.get('eta_s'))}", overflow="ellipsis", no_wrap=True)
    title = f"{state.get('run_name') or '?'} · {state.get('model') or ''} · {state.get('mode') or ''} on {state.get('device') or '?'}"
    return Panel(Group(line1, line2, line3), title=title, title_align="left", subtitle=state["experiment"], subtitle_align="right")


def hardware_panel(hw: dict[str, Any] | None) -> Panel:
    if hw is None:
        return Panel(Text("no telemetry yet"), title="hardware")
    lines = []
    if hw.get("gpu_util") is not None:
        lines += [f"GPU util {hw['gpu_util']:.0f}%",
                  f"VRAM {number(hw.get('vram_used_mb') and hw['vram_used_mb'] / 1024, '.1f')}/"
                  f"{number(hw.get('vram_total_mb') and hw['vram_total_mb'] / 1024, '.1f')} GiB",
                  f"temp {number(hw.get('gpu_temp_c'), '.0f')} °C"]
    else:
        lines.append("no GPU")
    lines += [f"CPU {number(hw.get('cpu_percent'), '.0f')}%",
              f"RAM {number(hw.get('ram_used_mb') and hw['ram_used_mb'] / 1024, '.1f')}/"
              f"{number(hw.get('ram_total_mb') and hw['ram_total_mb'] / 1024, '.1f')} GiB",
              f"sampled {max(0.0, time.time() - hw['ts']):.0f} s ago"]
    return Panel(Text("\n".join(lines), no_wrap=True, overflow="ellipsis"), title="hardware (trainer host)")


def sample_panel(sample: dict[str, Any] | None) -> Panel:
    if sample is None:
        waiting = "no sample yet (the trainer peeks every training.sample_steps steps; with 0, at an evaluation about once a minute)"
        return Panel(Text(waiting), title="latest sample")
    table = Table.grid(expand=True, padding=(0, 1))
    for name in ("input", "target", "generated"):
        table.add_column(name, ratio=1, overflow="ellipsis")
    table.add_row(*(Text(name, style="bold") for name in ("input", "target", "generated")))
    # Text objects, never markup strings: Rust's `#[test]` must not be read as rich markup.
    table.add_row(*(Text(sample.get(name) or "") for name in ("input", "target", "generated")))
    return Panel(table, title=f"latest sample (step {sample['step']})", title_align="left")


def frame(state: dict[str, Any], history, log_scale: bool = False, refresh: float | None = None) -> Layout:
    """The whole screen as a Layout: it fills the height it is rendered into."""
    root = Layout()
    stale = f"stale after {state.get('stale_after_s', 0):g} s without a write"
    keys = Text(f"q quit · l log scale ({'on' if log_scale else 'off'}) · refresh {refresh:g} s · {stale}" if refresh
                else f"snapshot at {time.strftime('%Y-%m-%d %H:%M:%S')} · {stale}", style="dim")
    if state["status"] == "waiting":
        root.split_column(Layout(header(state, refresh), size=3), Layout(Text("waiting for the trainer to write ...")),
                          Layout(keys, size=1))
        return root
    body = Layout()
    body.split_row(Layout(Panel(LossChart(history.steps, state["evals"], log_scale),
                                title=f"loss · train ⣀⡠ braille line · validation x{' · log scale' if log_scale else ''}",
                                title_align="left")),
                   Layout(hardware_panel(state.get("hardware")), size=28))
    root.split_column(Layout(header(state, refresh), size=5), body, Layout(sample_panel(state.get("sample")), size=9),
                      Layout(keys, size=1))
    return root


def plain_frame(state: dict[str, Any], history, width: int, height: int, log_scale: bool = False) -> str:
    """One frame as plain text (no colour codes), for --once."""
    LossChart._last = (None, None, 0.0, None)  # a one-off frame always draws current data
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, height=height, color_system=None, force_terminal=False,
                      legacy_windows=False, emoji=False)
    console.print(frame(state, history, log_scale=log_scale))
    return buffer.getvalue()
