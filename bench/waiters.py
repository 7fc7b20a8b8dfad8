"""`python -m bench.waiters URL KEY N`: N checks that wait for a revision that never comes, until killed.

Run as a process of its own, so the client that times another endpoint meanwhile shares
neither its event loop nor its connection pool with them (in one process, the client's
own bookkeeping for hundreds of pending requests is what gets measured).
"""

import asyncio
import sys

import httpx
import orjson


async def park(url: str, key: str, count: int) -> None:
    headers = {"Content-Type": "application/json", "Authorization": "Bearer " + key}
    body = orjson.dumps({"subject": "bench-waiter", "action": "read", "resource": {"type": "algorithm", "id": "x"},
                         "min_revision": 10**12})
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as http:
        while True:  # the server answers 503 after AUTHZ_MIN_REVISION_WAIT: ask again
            await asyncio.gather(*(http.post("/v1/check", content=body) for _ in range(count)), return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(park(sys.argv[1], sys.argv[2], int(sys.argv[3])))
