"""Reports: HTML (Jinja2, autoescaped), CSV, JSON lines and OCSF over the same findings."""
