import pytest

from source.distributed import DistributedContext, balanced_shards, context_from_env, gather_objects


@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_balanced_shards_cover_every_item_once(world_size):
    weights = [5, 1, 8, 3, 3, 0, 2, 7, 1]
    shards = balanced_shards(weights, world_size)
    assert len(shards) == world_size
    assert sorted(i for shard in shards for i in shard) == list(range(len(weights)))
    loads = [sum(max(weights[i], 1) for i in shard) for shard in shards]
    assert max(loads) - min(loads) <= max(weights)


def test_context_from_env(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    context = context_from_env()
    assert context == DistributedContext(3, 4, 1) and context.enabled and not context.is_main
    assert gather_objects("x", DistributedContext()) == ["x"]
