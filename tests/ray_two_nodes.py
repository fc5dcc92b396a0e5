"""Child process for ``tests/cluster/test_ray_two_nodes.py``: a two-node Ray cluster on this
machine (Ray's cluster utilities: a head node and a second node, each with 2 CPUs and one unit
of the custom resource ``embedder``, the second also with its own ``second_node``), an
ingest on it with two embedding actors that each need an ``embedder``, so one runs on each
node; then the cluster is shut down.

    python -m tests.ray_two_nodes HOME SOURCE

Prints one JSON line: the ingest's summary and the cluster's node ids.
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    home, source = argv
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray
    from ray.cluster_utils import Cluster

    from speakerdb.api import SpeakerDB
    from speakerdb.config import IngestConfig

    store = 80 * 2**20
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "resources": {"embedder": 1}, "object_store_memory": store,
        "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=2, resources={"embedder": 1, "second_node": 1},
                         object_store_memory=store)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        second = [n["NodeID"] for n in ray.nodes() if "second_node" in n["Resources"]]
        with SpeakerDB.create(home, model="spectral") as db:
            stats = db.ingest([source], config=IngestConfig(
                files_per_batch=2, engine="ray", workers=2,
                worker_resources={"embedder": 1}))
            ok = db.check().ok
        print(json.dumps({"stats": stats.as_dict(), "nodes": nodes, "second": second,
                          "check": ok}), flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
