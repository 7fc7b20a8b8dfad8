"""authz benchmarks: `python -m bench.run [--quick]` prints `figure, baseline, ratio` and writes bench/results/."""
