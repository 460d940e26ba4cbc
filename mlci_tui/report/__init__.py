"""Reports of a candidate against its baseline: Markdown, terminal, HTML and JSON, and PR comments.

`build.build_report` gathers everything (gate verdict, metrics, params, data, history, step
curves) into a `Report`; `markdown`, `term` and `html` render it; `post` publishes the
Markdown as one comment per pull/merge request. Only `term` imports plotext, lazily.
"""
