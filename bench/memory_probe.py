"""Run as a process of its own: RSS before and after loading the rules, then the resources, of a database.

A fresh process gives clean numbers for "memory per 100k memberships"; it prints JSON.
"""

import json
import sys

from authz.engine.snapshot import load_index
from authz.store.database import Database
from authz_client.decisions.index import DecisionIndex
from authz_client.decisions.stream import bulk_allocation
from bench.server import rss_mb


def main() -> None:
    import os

    database = Database(sys.argv[1])
    editor = DecisionIndex.build()
    before = rss_mb(os.getpid())
    with database.session() as session, bulk_allocation():
        counts = load_index(session, editor, is_postgres=database.is_postgres)
        index = editor.finish()
    after = rss_mb(os.getpid())
    memberships = index.counts()["memberships"]
    print(json.dumps({"before_mb": before, "after_mb": after, "counts": counts, "memberships": memberships,
                      "resources": index.counts()["resources"]}))


if __name__ == "__main__":
    main()
