"""graphtap's infrastructure: one CDKTF stack per environment folder in
`runtime/environments/` (its `stack.toml`).

Kept free of CDK imports so that `python -m stacks` controls when the heavy bindings load.
"""
