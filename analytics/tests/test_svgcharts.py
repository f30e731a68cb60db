"""Charts drawn on the server for the PDF report: text stays text, gaps stay gaps."""
import xml.etree.ElementTree as ET

from analytics import svgcharts

SVG = "{http://www.w3.org/2000/svg}"


def test_chart_labels_are_escaped_and_refer_to_nothing_outside():
    svg = svgcharts.chart(kind="bar", categories=["<script>alert(1)</script>", "R&D"], unit='"units"', axis="Source",
                          series=[("<b>leads</b>", [3, None]), ("a & b", [1, 2])], title="<title>")
    root = ET.fromstring(svg)  # well-formed: nothing a label holds breaks out of its text node
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "<script>alert(1)</script>" in texts and "R&D" in texts and "<b>leads</b>" in texts
    assert not [e for e in root.iter() if e.tag.split("}")[-1] in ("script", "b", "image", "use", "a", "style")]
    assert "href" not in svg and "url(" not in svg


def paths(svg, **attrs):
    return [e.get("d") for e in ET.fromstring(svg).iter(f"{SVG}path") if all(e.get(k) == v for k, v in attrs.items())]


def test_an_empty_period_is_a_gap_in_a_line_and_a_lone_value_a_dot():
    svg = svgcharts.chart(kind="line", categories=["a", "b", "c", "d", "e"], series=[("x", [1, None, 2, 3, None])],
                          unit="u", axis="t")
    line, = paths(svg, fill="none", stroke=svgcharts.PALETTE[0])
    assert line.count("M") == 2  # the pen lifts over the gap instead of drawing a zero
    dot, = paths(svg, fill=svgcharts.PALETTE[0])
    assert dot.count("M") == 1  # "a" stands alone between the edge and a gap: it gets a dot to be seen


def test_a_refund_month_goes_below_the_zero_line():
    assert svgcharts.nice_ticks(-100, 900) == [-250.0, 0.0, 250.0, 500.0, 750.0, 1000.0]
    svg = svgcharts.chart(kind="bar", categories=["Jan", "Feb", "Mar"], series=[("Cash", [-100, 0, 900])],
                          unit="$", axis="Month")
    zero, = paths(svg, stroke="#555555", **{"stroke-width": "0.8"})
    zero_y = float(zero.split()[1].split("H")[0])
    bars = paths(svg, fill=svgcharts.PALETTE[0])[0].split("Z")[:-1]
    assert len(bars) == 2  # February's zero draws nothing
    tops = [float(b.split()[1].split("h")[0]) for b in bars]
    assert tops[0] == zero_y and tops[1] < zero_y  # January hangs down from zero, March stands on it


def test_a_chart_with_nothing_to_show_says_so():
    texts = [t.text for t in ET.fromstring(svgcharts.chart(
        kind="bar", categories=["Jan", "Feb"], series=[("Replies", [0, 0]), ("p90", [None, None])], unit="u",
        axis="t")).iter(f"{SVG}text")]
    assert "Nothing in this range" in texts
