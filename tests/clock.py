"""A clock tests move by hand: expiry and retry back-off are tested without sleeping."""

from datetime import timedelta

from authz.services.runtime import Runtime


class Clock:
    """Takes over the runtime's clock; `advance(hours=...)` moves it."""

    def __init__(self, runtime: Runtime) -> None:
        self.now = runtime.clock()
        runtime.clock = lambda: self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
