"""Cross-cutting service plumbing: configuration and logging."""
