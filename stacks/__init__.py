"""graphtap's infrastructure: one CDKTF stack per environment file in `stacks/environments/`.

Kept free of CDK imports so that `python -m stacks` controls when the heavy bindings load.
"""
