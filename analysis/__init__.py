"""Analysis of drift_sweeps results: convergence times, scaling-law fits, tables, figures, report.

Reads the Parquet tables written by `drift_sweeps.results`; never imports torch or ray, so a
results folder copied to a laptop can be analysed with pandas/pyarrow/scipy/matplotlib alone.
This file imports nothing on purpose (`analysis.headline` must stay cheap to import).

Modules: `load` (read a sweep folder), `axis` (--axis expressions of config keys), `convergence`
(post-hoc, censoring-aware times), `fits` (censored scaling-law fits) on `tobit` (the censored
regression), `stats` (group statistics for ablations), `predict` (linear-theory overlay, measured
decay rates), `tables` (comparison tables), `plots` (compute/draw figures, one module per family),
`generator_study` (a generator sweep's sample quality), `report` (the CLI), `headline` (the one-table
summary the sweep CLI prints).
"""
