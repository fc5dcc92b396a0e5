import numpy as np
import pytest

from speakerdb.index import SetInfo, catch_up_plan, ids_digest
from speakerdb.index.matrix import MatrixState


def _info(ids, store_max_id):
    ids = np.asarray(ids, dtype=np.int64)
    return SetInfo((64, 128), int(ids.size), "sha", "rev", store_max_id, ids_digest(ids),
                   "2024-01-01T00:00:00+00:00", MatrixState(int(ids.size), 0, 1))


@pytest.mark.parametrize(
    "index_ids, saved_max, store_ids, plan",
    [
        ([], 0, [], "current"),
        ([1, 2, 3], 3, [1, 2, 3], "current"),
        ([1, 2, 3], 5, [1, 2, 3], "current"),  # max id 4-5 were deleted before saving
        ([], 0, [1, 2], "append"),  # empty index, store has filled up
        ([1, 2, 3], 3, [1, 2, 3, 4, 7], "append"),
        ([1, 3], 3, [1, 3, 8], "append"),  # 2 deleted before saving
        ([1, 2, 3], 3, [1, 3, 4], "rebuild"),  # 2 deleted since saving
        ([1, 2, 3], 3, [1, 2], "rebuild"),  # newest deleted since saving
        ([1, 2, 3], 3, [], "rebuild"),
        ([1, 2], 3, [1, 2, 3, 4], "rebuild"),  # store had 3 the index never got
        ([1, 2, 3, 9], 9, [1, 2, 3], "rebuild"),  # index ahead of the store
        ([1, 2, 4], 4, [1, 2, 3, 4], "rebuild"),  # a gap below the saved max
    ],
)
def test_catch_up_plan(index_ids, saved_max, store_ids, plan):
    store = np.asarray(store_ids, dtype=np.int64)
    store_max = int(store[-1]) if store.size else 0
    assert catch_up_plan(_info(index_ids, saved_max), store, store_max) == plan


def test_catch_up_plan_ignores_count_when_digest_disagrees():
    info = _info([1, 2, 3], 3)
    info.ids_digest = "0" * 64
    assert catch_up_plan(info, np.array([1, 2, 3]), 3) == "rebuild"
