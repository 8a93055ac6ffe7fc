"""Tool environments the harness offers to the model: chain, research and files."""
