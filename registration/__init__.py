"""Registration engine: CBCT to planning CT (3D rigid), kV/MV pairs to DRRs (2D/2D)."""
