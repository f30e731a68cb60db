"""Charts drawn as SVG on the server, for the PDF report (WeasyPrint runs no JavaScript).

chart() draws labelled series over categories (periods, sources) as lines or grouped bars, with
a y axis (ticks and a unit title), category labels along x (thinned so they never overlap), an
x axis title and a legend. One chart has one unit: the caller never puts money and counts on one
axis. Every piece of text that reaches the SVG is XML-escaped here (labels come from outside:
source and customer names), and the SVG refers to nothing outside itself: no href, no image, no
font file (text is set in the system's DejaVu Sans).
"""
import math
from html import escape

# Okabe-Ito: told apart with colour-blindness; lines also differ by dash pattern for grey print.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000")
DASHES = ("", "6 3", "2 2", "8 3 2 3", "4 4", "1 3", "10 4")
WIDTH = 680
FONT = 10
CHAR = 0.6 * FONT  # estimated width of a character of DejaVu Sans at FONT px
LEFT, RIGHT, TOP = 70, 14, 10


def _text(value) -> str:
    return escape(str(value), quote=True)


def nice_ticks(low: float, high: float, *, count: int = 5, integer: bool = False) -> list:
    """Round tick values covering low..high (0 always inside), about count of them."""
    low, high = min(low, 0.0), max(high, 0.0)
    if high == low:
        high = low + 1
    raw = (high - low) / (count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if integer:
        step = max(1, math.ceil(step))
    first, last = math.floor(low / step), math.ceil(high / step)
    return [round(i * step, 10) for i in range(first, last + 1)]


def _legend(series, top: float, *, bars: bool) -> tuple[list, float]:
    """Legend items laid out in rows; returns the SVG parts and the height used."""
    parts, x, y = [], LEFT, top
    for i, (label, _) in enumerate(series):
        width = 22 + len(str(label)) * CHAR + 16
        if x + width > WIDTH - RIGHT and x > LEFT:
            x, y = LEFT, y + FONT + 6
        colour, dash = PALETTE[i % len(PALETTE)], DASHES[i % len(DASHES)]
        parts.append(f'<rect x="{x + 3:.1f}" y="{y:.1f}" width="10" height="9" fill="{colour}"/>' if bars else
                     f'<line x1="{x:.1f}" y1="{y + 4:.1f}" x2="{x + 16:.1f}" y2="{y + 4:.1f}" stroke="{colour}" '
                     f'stroke-width="2.5" stroke-dasharray="{dash}"/>')
        parts.append(f'<text x="{x + 20:.1f}" y="{y + 8:.1f}">{_text(label)}</text>')
        x += width
    return parts, y - top + FONT + 4


def chart(*, kind: str, categories: list, series: list, unit: str, axis: str, fmt=str, integer: bool = False,
          height: int = 130, title: str = "") -> str:
    """An SVG chart (a string of markup, safe to put in HTML as it is).

    kind: "line" or "bar" (grouped bars, one per series in each category); categories: the x
    labels; series: [(label, [value or None per category])] — None is a gap, not a zero; unit:
    the y axis title; axis: the x axis title; fmt formats a tick value; integer: ticks are whole
    numbers; height: of the plot area; title: what a screen reader says.
    """
    values = [v for _, vs in series for v in vs if v is not None]
    ticks = nice_ticks(min(values, default=0.0), max(values, default=0.0), integer=integer)
    lo, hi = ticks[0], ticks[-1]
    plot_w = WIDTH - LEFT - RIGHT
    bottom = TOP + height

    def y(value):
        return bottom - (value - lo) / (hi - lo) * height

    slot = plot_w / max(len(categories), 1)

    def x(i):
        return LEFT + (i + 0.5) * slot

    # Few elements: every grid line in one path, every bar of a series in one path (WeasyPrint's
    # time grows with the number of SVG elements, and a report has many charts).
    grid = " ".join(f"M{LEFT} {y(t):.1f}H{WIDTH - RIGHT}" for t in ticks if t != 0)
    parts = [f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{height}" fill="#ffffff" stroke="#bbbbbb" '
             f'stroke-width="0.5"/>', f'<path d="{grid}" stroke="#dddddd" stroke-width="0.5" fill="none"/>',
             f'<path d="M{LEFT} {y(0):.1f}H{WIDTH - RIGHT}" stroke="#555555" stroke-width="0.8"/>']
    parts += [f'<text x="{LEFT - 4}" y="{y(t) + FONT * 0.35:.1f}" text-anchor="end">{_text(fmt(t))}</text>'
              for t in ticks]
    every = max(1, math.ceil((max((len(str(c)) for c in categories), default=1) * CHAR + 8) / slot))
    shown = range(0, len(categories), every)
    marks = " ".join(f"M{x(i):.1f} {bottom}v3" for i in shown)
    parts.append(f'<path d="{marks}" stroke="#555555" stroke-width="0.5" fill="none"/>')
    parts += [f'<text x="{x(i):.1f}" y="{bottom + 4 + FONT:.1f}" text-anchor="middle">{_text(categories[i])}</text>'
              for i in shown]
    if not any(values):  # said between two grid lines
        parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{TOP + height * 0.375 + FONT * 0.35:.1f}" '
                     f'text-anchor="middle" fill="#666666">Nothing in this range</text>')
    if kind == "bar":
        parts += _bars(series, x, y, slot)
    else:
        parts += _lines(series, x, y)
    parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{bottom + 2 * FONT + 10:.1f}" text-anchor="middle" '
                 f'fill="#333333">{_text(axis)}</text>')
    parts.append(f'<text transform="translate(12 {TOP + height / 2:.1f}) rotate(-90)" text-anchor="middle" '
                 f'fill="#333333">{_text(unit)}</text>')
    legend, legend_h = _legend(series, bottom + 2 * FONT + 20, bars=kind == "bar")
    parts += legend
    total_h = bottom + 2 * FONT + 20 + legend_h + 4
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {total_h:.0f}" '
            f'width="{WIDTH}" height="{total_h:.0f}" role="img" aria-label="{_text(title)}" '
            f'font-family="DejaVu Sans, sans-serif" font-size="{FONT}" fill="#111111">'
            f'<title>{_text(title)}</title>' + "".join(parts) + "</svg>")


def _bars(series, x, y, slot):
    width = min(slot * 0.8 / max(len(series), 1), 28)  # a few categories: bars, not slabs
    group = width * len(series)
    parts = []
    for s, (_, vs) in enumerate(series):
        rects = []
        for i, v in enumerate(vs):
            if not v:  # nothing to draw for a zero or an empty period
                continue
            top, end = sorted((y(v), y(0)))
            rects.append(f"M{x(i) - group / 2 + s * width:.2f} {top:.2f}h{max(width - 0.4, 0.3):.2f}"
                         f"v{max(end - top, 0.6):.2f}h{-max(width - 0.4, 0.3):.2f}Z")
        if rects:
            parts.append(f'<path d="{"".join(rects)}" fill="{PALETTE[s % len(PALETTE)]}"/>')
    return parts


def _lines(series, x, y):
    parts = []
    for s, (_, vs) in enumerate(series):
        colour, dash = PALETTE[s % len(PALETTE)], DASHES[s % len(DASHES)]
        path, dots, pen_down = [], [], False
        for i, v in enumerate(vs):
            if v is None:
                pen_down = False
                continue
            path.append(f'{"L" if pen_down else "M"}{x(i):.1f} {y(v):.1f}')
            if not pen_down and (i + 1 == len(vs) or vs[i + 1] is None):  # a lone value: a dot, not a line
                dots.append(f"M{x(i) - 2:.1f} {y(v):.1f}a2 2 0 1 0 4 0a2 2 0 1 0 -4 0Z")
            pen_down = True
        if path:
            parts.append(f'<path d="{" ".join(path)}" fill="none" stroke="{colour}" stroke-width="1.6" '
                         f'stroke-dasharray="{dash}" stroke-linejoin="round"/>')
        if dots:
            parts.append(f'<path d="{"".join(dots)}" fill="{colour}"/>')
    return parts
