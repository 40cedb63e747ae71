"""The report's stylesheet, inlined into the page so that it reads offline."""

CSS = """
:root { --text: #2b2f36; --muted: #6b717b; --line: #e3e6ea; --bg: #f6f7f9; --card: #ffffff;
        --accent: #3b6ea8; --warn-bg: #fff8e6; --warn: #d9a21b; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text);
       font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { background: #1f2a37; color: #fff; padding: 18px 0 14px; }
.wrap { max-width: 1280px; margin: 0 auto; padding: 0 24px; }
header h1 { margin: 0 0 2px; font-size: 22px; font-weight: 600; }
header .sub { color: #b8c2cf; font-size: 13px; }
header nav { margin-top: 8px; font-size: 13px; }
header nav a { color: #cfe0f5; margin-right: 16px; text-decoration: none; }
main { max-width: 1280px; margin: 0 auto; padding: 20px 24px 48px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
          padding: 16px 20px 20px; margin: 0 0 20px; }
h2 { font-size: 17px; font-weight: 600; margin: 0 0 12px; }
h3 { font-size: 13px; font-weight: 600; margin: 0 0 6px; color: var(--muted); }
.notes { background: var(--warn-bg); border-left: 4px solid var(--warn); }
.notes ul { margin: 0; padding-left: 20px; }
table.metrics { border-collapse: collapse; width: auto; min-width: 50%; font-variant-numeric: tabular-nums; }
table.metrics th, table.metrics td { padding: 6px 14px; border-bottom: 1px solid var(--line); text-align: right; }
table.metrics th { font-weight: 600; color: var(--muted); font-size: 12px; border-bottom: 2px solid var(--line); }
table.metrics th:first-child, table.metrics td:first-child { text-align: left; }
table.metrics tbody tr:nth-child(even) { background: #fafbfc; }
table.metrics td.stage .parent { color: var(--muted); }
table.metrics td.main { font-weight: 600; }
.unit { color: var(--muted); font-size: 12px; }
.charts { display: flex; flex-wrap: wrap; gap: 18px 28px; }
.chart { margin: 0; }
.chart figcaption { font-size: 13px; font-weight: 600; margin-bottom: 4px; }
.chart figcaption .stat { color: var(--muted); font-weight: 400; margin-left: 6px; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; margin: 0 0 14px; font-size: 12px; }
.legend span { display: inline-flex; align-items: center; gap: 5px; }
.legend i { width: 12px; height: 12px; border-radius: 2px; border: 1px solid rgba(0,0,0,.2); }
.grow { padding: 10px 0 12px; border-top: 1px solid var(--line); }
.gid { font-weight: 600; font-size: 12px; margin-bottom: 6px; word-break: break-all; }
.panels { display: flex; flex-wrap: wrap; gap: 10px; }
.panels figure { margin: 0; }
.panels img { display: block; border-radius: 3px; border: 1px solid var(--line); background: #eee; }
.panels img.px { image-rendering: pixelated; }
.panels figcaption { font-size: 12px; color: var(--muted); margin-top: 3px; text-align: center; }
.empty { color: var(--muted); }
"""
