"""Side-by-side benchmarks; results and the commands that reproduce them in RESULTS.md."""
