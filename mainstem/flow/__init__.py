"""The flow: each path sequenced once, its steps, lineage commits, and the workspace's status."""
