"""Plots as PNG files: sample grids (and, with later issues, curves, confusion matrices, filters).

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot state), so plotting works
without a display and from any thread.
"""
