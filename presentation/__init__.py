"""Presentation: the one place that turns frames and dataclasses into HTML pages, figures and Markdown.

`format` (how every number reads, and every metric's plain-language label and meaning), `figures` (matplotlib
`Figure` objects, never pyplot state), `html` (the one page shell and table renderer, Markdown through a
library), and one module per report: `model_report` + `model_card` (training), `comparison` (model vs rules),
`funnel` (funnel analytics), `checks` (data checks). It sits above `training`, `serve` and `analytics`.
"""
