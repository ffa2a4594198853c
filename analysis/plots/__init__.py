"""Figures, one module per family: each figure has a pure `*_data` function (tables in, tables out) and a
`draw_*` function that only draws.

Every `draw_*` takes the data and a path stem and writes `<stem>.png`, `<stem>.pdf` and `<stem>.svg`
(`analysis.style`: paper sizes, 8 pt text, Okabe-Ito colours), returning the paths.  Groups are named
by `analysis.labels` ("Gaussian, annealed h0=2 r=0.25") and coloured in the comparison table's order.

Modules: `scaling` (T against K_max or the axis), `curves` (error against t), `spectra` (per-frequency
heatmaps), `rates` (per-mode decay rates), `ablation` (T and fraction converged per group), `search`
(history, importance, parallel coordinates); `common` holds what they share.  The generator studies'
quality and sample figures are in `analysis.generator_study`.
"""

import matplotlib

matplotlib.use("Agg")  # before any submodule imports pyplot: figures are written to files, never shown
