"""The random spread of retry and reconnect delays, so that clients do not retry in step.

It draws from a generator of its own: the process's global `random` belongs to the application (which
may seed it for reproducible runs, or check that nothing else moves it, as Hypothesis does), and a
client's background thread must not move it.
"""

import random

JITTER = random.Random()
